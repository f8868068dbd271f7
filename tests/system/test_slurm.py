"""The Slurm job array of docs/batch-runs.md, run on a real one-node Slurm cluster.

The session fixture starts munged, slurmctld and slurmd in a temporary folder (their own
slurm.conf, state, spool and log folders, munge key and socket, free ports) and stops them
whatever happens. The tests submit the job script and the merge line of the Slurm section of
docs/batch-runs.md, read from the page (its example paths replaced by the test's folders), and
compare the merged folder with the job script run once outside Slurm as the only shard.
Needs root and Debian's slurmctld, slurmd, slurm-client and munge (`.ci/run` installs them);
elsewhere the tests are skipped with the reason.
"""

import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "batch-runs.md"
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sinfo", "squeue")
SHARDS = 2
IMAGES = 12
SLOW_PHOTOS = (3, 5)  # the second and third image of task 2
SLOW_SIDE = 4000  # pixels: 16 M
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
        "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def _why_not() -> str | None:
    missing = [name for name in PROGRAMS if shutil.which(name, path=SBIN) is None]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} missing; as root: apt-get install "
                "slurmctld slurmd slurm-client munge, as .ci/run does)")
    if os.geteuid() != 0:
        return "starting slurmd and munged needs root"
    return None


UNAVAILABLE = _why_not()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))]


# --- the Slurm section of the docs ---------------------------------------------------------

def page_block(marker: str) -> str:
    """The code block of PAGE under the comment `<!-- MARKER; ... -->`."""
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(rf"^<!-- {re.escape(marker)};.*?-->\n```\w*\n(.*?)^```", text, re.M | re.S)
    assert found, f"{PAGE.name} has no code block under <!-- {marker}; ... -->"
    return found[1]


def in_folders(text: str, photos: Path, out: Path) -> str:
    """The page's text with its example folders replaced by the test's."""
    assert "/data/photos" in text or "/scratch/cam" in text, text
    return text.replace("/data/photos", str(photos)).replace("/scratch/cam", str(out))


# --- a one-node cluster ----------------------------------------------------------------------

SLURM_CONF = """\
ClusterName=cnnviz-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the node claims more CPUs than it has, so that three tasks of the docs'
# --cpus-per-task=4 run side by side
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=10
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """munged, slurmctld and slurmd in one folder; Slurm's clients through `run`."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "PATH": SBIN, "SLURM_CONF": str(self.conf)}
        self.daemons: list[subprocess.Popen] = []

    def start(self) -> None:
        for name in ("munge", "state", "spool", "log"):
            (self.root / name).mkdir(mode=0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(SLURM_CONF.format(
            host=host, root=self.root, ctld_port=_free_port(), slurmd_port=_free_port(),
            cpus=4 * SHARDS))
        munge = self.root / "munge"
        self._daemon("munged", "--foreground", "--force", f"--key-file={key}",
                     f"--socket={munge}/munge.socket", f"--pid-file={munge}/munged.pid",
                     f"--log-file={self.root}/log/munged.log", f"--seed-file={munge}/seed")
        self._wait(lambda: (munge / "munge.socket").exists(), 20, "munged made no socket")
        self._daemon("slurmctld", "-D", "-f", str(self.conf))
        self._daemon("slurmd", "-D", "-f", str(self.conf))
        self._wait(lambda: self.node_state() == "idle", 60,
                   "the node did not become idle in sinfo")

    def _daemon(self, name: str, *arguments: str) -> None:
        with open(self.root / "log" / f"{name}.out", "wb") as log:
            self.daemons.append(subprocess.Popen([shutil.which(name, path=SBIN), *arguments],
                                                 env=self.env, stdout=log,
                                                 stderr=subprocess.STDOUT))

    def _wait(self, ready, timeout: float, failure: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            exited = [p.args[0] for p in self.daemons if p.poll() is not None]
            if exited or time.monotonic() > deadline:
                raise RuntimeError(f"Slurm did not start: {failure} within {timeout} s "
                                   f"(exited: {exited or 'none'}).\n{self.logs()}")
            time.sleep(0.2)

    def node_state(self) -> str:
        result = self.run("sinfo", "-h", "-N", "-o", "%t", check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-15:])
                         for path in sorted((self.root / "log").iterdir()))

    def run(self, *command: str, check: bool = True, cwd: Path | None = None,
            **variables: str) -> subprocess.CompletedProcess:
        result = subprocess.run(command, cwd=cwd, env={**self.env, **variables},
                                capture_output=True, text=True, timeout=60)
        if check:
            assert result.returncode == 0, f"{command}: {result.stderr}\n{self.logs()}"
        return result

    def states(self, job: str) -> dict[str, str]:
        """The state of each task of a job (the job's own for one that is not an array)."""
        lines = self.run("scontrol", "show", "job", "-o", job).stdout.splitlines()
        fields = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines if line.strip()]
        return {f.get("ArrayTaskId", f["JobId"]): f"{f['JobState']} {f['Reason']}"
                for f in fields}

    def completing(self, job: str) -> bool:
        """Whether processes of an ended job are still running (a cancelled job's handle
        SIGTERM)."""
        result = self.run("squeue", "-h", "-t", "CG", "-o", "%i", "-j", job, check=False)
        return bool(result.stdout.strip())

    def wait(self, job: str, timeout: float = 300) -> dict[str, str]:
        """Wait until every task of a job has ended; returns their states."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states(job)
            ended = {task: state.split()[0] for task, state in states.items()}
            if set(ended.values()) <= ENDED and not self.completing(job):
                return ended
            assert time.monotonic() < deadline, f"job {job} still {states} after {timeout} s"
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel every job, stop the daemons, then end whatever they left running."""
        if any(p.poll() is None for p in self.daemons):
            self.run("scancel", "--user=root", check=False)
        for process in reversed(self.daemons):
            process.terminate()
        for process in self.daemons:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in _processes_with(f"SLURM_CONF={self.conf}"):  # job steps left behind
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def _processes_with(variable: str) -> list[int]:
    """The processes whose environment holds VARIABLE (NAME=VALUE)."""
    wanted = variable.encode() + b"\0"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                environment = (entry / "environ").read_bytes()
            except OSError:
                continue
            if environment.startswith(wanted) or b"\0" + wanted in environment:
                pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


# --- the jobs ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """IMAGES small generated shape images, but for SLOW_PHOTOS: big ones, which take task 2
    (photos 1, 3, 5, ...) a second or more each to decode, so that the retry test's scancel
    lands half-way through that task on any machine."""
    from cnnviz_cli.demo.shapes import draw_scene

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(21)
    for index in range(IMAGES):
        image, _ = draw_scene(rng, 32, [index % 6])
        picture = Image.fromarray(image)
        if index in SLOW_PHOTOS:
            picture = picture.resize((SLOW_SIDE, SLOW_SIDE), Image.Resampling.NEAREST)
        picture.save(folder / f"photo-{index:02d}.png")
    return folder


def job_environment() -> dict[str, str]:
    """What a job needs to find this checkout's `cnnviz` (sbatch passes the environment on)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), SBIN])
    return {"PATH": path, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")]))}


def write_job_script(photos: Path, out: Path, folder: Path, shards: int = SHARDS) -> Path:
    """The documented job script for SHARDS tasks, its folders the test's."""
    text = in_folders(page_block("slurm job script"), photos, out)
    assert "\nSHARDS=8 " in text, text
    script = folder / "cam.sh"
    script.write_text(text.replace("\nSHARDS=8 ", f"\nSHARDS={shards} "))
    return script


@pytest.fixture(scope="module")
def single_run(photos, tmp_path_factory) -> dict[str, set[str]]:
    """The documented job script run once, outside Slurm, as the only task (--shard 1/1):
    the files of each image key. Bash runs the script with `cnnviz` as a function that prints
    its arguments, and the command runs in this process (no second TensorFlow start)."""
    from click.testing import CliRunner

    from cnnviz_cli.cli import cli

    folder = tmp_path_factory.mktemp("single")
    script = write_job_script(photos, folder, folder, shards=1)
    expanded = subprocess.run(
        ["bash", "-c", 'cnnviz() { printf "%s\\0" "$@"; }; source "$0"', str(script)],
        capture_output=True, text=True, check=True, env={**os.environ, "SLURM_ARRAY_TASK_ID": "1"})
    result = CliRunner().invoke(cli, expanded.stdout.split("\0")[:-1], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return files_by_key(json.loads((folder / "shard-1" / "manifest.json").read_text()))


def files_by_key(manifest: dict, strip: int = 0) -> dict[str, set[str]]:
    """The output files of each image key; strip the first STRIP folders of each path."""
    files: dict[str, set[str]] = {}
    for record in manifest["outputs"]:
        key, name = record["file"].split("/")[strip:]
        files.setdefault(key, set()).add(name)
    return files


def submission(photos: Path, out: Path) -> tuple[list[str], str]:
    """The two documented submission lines: the array's sbatch command and the merge line."""
    array_line, merge_line = in_folders(page_block("slurm submit"), photos, out).splitlines()
    command = shlex.split(re.fullmatch(r"array=\$\((sbatch .*)\)", array_line)[1])
    assert command[-1] == "cam.sh", array_line
    return command, merge_line


def submit_array(cluster: Cluster, photos: Path, out: Path, folder: Path, *options: str,
                 tasks: str = f"1-{SHARDS}") -> str:
    """The documented job script submitted from FOLDER with --array=TASKS and OPTIONS for
    cnnviz cam; returns the array's job id."""
    write_job_script(photos, out, folder)
    command, _ = submission(photos, out)
    return cluster.run(command[0], f"--array={tasks}", *command[1:], *options, cwd=folder,
                       **job_environment()).stdout.strip()


def submit_merge(cluster: Cluster, photos: Path, out: Path, folder: Path, array: str) -> str:
    """The documented merge line after the array ARRAY; returns the merge's job id."""
    _, merge_line = submission(photos, out)
    submitted = cluster.run("bash", "-c", merge_line, cwd=folder, array=array,
                            **job_environment())
    return re.fullmatch(r"Submitted batch job (\d+)", submitted.stdout.strip())[1]


def job_logs(folder: Path) -> str:
    """The output of every job submitted from FOLDER."""
    return "\n".join(f"--- {path.name}\n{path.read_text()}"
                     for path in sorted(folder.glob("*.out")))


def check_merged(out: Path, single_run: dict[str, set[str]]) -> None:
    """The merged manifest lists every image once, with the files of a single run, each in the
    folder of its shard."""
    manifest = json.loads((out / "manifest.json").read_text())
    keys = [item["key"] for item in manifest["inputs"]]
    assert sorted(keys) == sorted(single_run) and len(single_run) == IMAGES
    assert files_by_key(manifest, strip=1) == single_run
    for record in manifest["outputs"]:
        shard, key, _ = record["file"].split("/")
        assert shard == f"shard-{sorted(single_run).index(key) % SHARDS + 1}"
        assert (out / record["file"]).is_file()


def folder_unlocked(folder: Path) -> bool:
    """Whether no run holds the lock on an output folder (see cnnviz_cli/io/lock.py)."""
    try:
        with open(folder / ".cnnviz.lock", "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(lock, fcntl.LOCK_UN)
    except FileNotFoundError:
        return True
    except BlockingIOError:
        return False
    return True


def wait_for(ready, timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)


def test_a_task_cancelled_half_way_and_submitted_again_finishes_only_what_was_missing(
        cluster, photos, single_run, tmp_path):
    """The documented array and merge, with one task cancelled half-way: the first merge waits
    for ever (as the docs say), the task submitted again skips what it finished, and the
    second merge equals one run of every image."""
    out, task = tmp_path / "cam", "2"
    shard = out / f"shard-{task}"
    array = submit_array(cluster, photos, out, tmp_path, "--batch-size", "1")
    merge = submit_merge(cluster, photos, out, tmp_path, array)

    def one_image_listed() -> bool:  # the first batch's end writes the manifest at once
        try:
            return bool(json.loads((shard / "manifest.json").read_text())["inputs"])
        except (OSError, ValueError, KeyError):
            return False

    wait_for(one_image_listed, 300, f"task {task} finished no image\n{job_logs(tmp_path)}")
    cluster.run("scancel", f"{array}_{task}")
    assert cluster.wait(f"{array}_{task}") == {task: "CANCELLED"}, job_logs(tmp_path)
    # Slurm may say CANCELLED while the task still saves its manifest (and would find its
    # folder locked if submitted again): read what it finished once it has let go.
    wait_for(lambda: folder_unlocked(shard), 60, f"task {task} still holds {shard}")
    finished = json.loads((shard / "manifest.json").read_text())
    share = len(range(int(task) - 1, IMAGES, SHARDS))
    assert 0 < len(finished["inputs"]) < share, (
        f"the task was not stopped half-way: {len(finished['inputs'])} of {share} images "
        f"finished\n{job_logs(tmp_path)}")
    kept = {shard / record["file"] for record in finished["outputs"]}
    stamps = {path: path.stat().st_mtime_ns for path in kept}

    again = submit_array(cluster, photos, out, tmp_path, "--batch-size", "1", tasks=task)
    assert cluster.wait(again) == {task: "COMPLETED"}, job_logs(tmp_path)
    others = {k: "COMPLETED" for k in map(str, range(1, SHARDS + 1)) if k != task}
    assert cluster.wait(array) == {**others, task: "CANCELLED"}, job_logs(tmp_path)
    wait_for(lambda: cluster.states(merge) == {merge: "PENDING DependencyNeverSatisfied"}, 60,
             f"the first merge is {cluster.states(merge)}, not stuck as the docs say")
    cluster.run("scancel", merge)
    merge = submit_merge(cluster, photos, out, tmp_path, again)
    assert cluster.wait(merge, timeout=60) == {merge: "COMPLETED"}, job_logs(tmp_path)
    assert {path: path.stat().st_mtime_ns for path in kept} == stamps  # not written again
    assert f"Skipping {len(finished['inputs'])} image(s)" in job_logs(tmp_path)
    check_merged(out, single_run)
