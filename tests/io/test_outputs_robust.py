"""Output folders under faults: two runs into one folder, a full disk, SIGKILL, a corrupt
manifest, a vanished input (issue 20); the folder opened only once the model and layers
resolved, and reused without losing track of files (issue 23). All on the bundled demo model."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnviz_cli.io.lock import LOCK, FolderLock
from cnnviz_cli.io.outputs import TEMPORARY

CAM = ["-q", "cam", "--method", "gradcam"]  # the demo model, seed 0 (cam's default)
PYTHON_PATH = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def write_images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for index in range(count):
        pixels = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index:03d}.png")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("inputs") / "in", 12)


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> Path:
    """An uninterrupted run over `images`, to compare the others with."""
    from click.testing import CliRunner

    from cnnviz_cli.cli import cli

    out = tmp_path_factory.mktemp("reference") / "out"
    assert CliRunner().invoke(cli, [*CAM, str(images), "-o", str(out)]).exit_code == 0
    return out


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def check_listed(out: Path) -> dict:
    """The manifest is valid, every file it lists is complete, every finished input has both
    of its files listed, and no file of the run is left unlisted (but in-flight ones)."""
    manifest = manifest_of(out)
    files = {record["file"] for record in manifest["outputs"]}
    for name in files:
        with Image.open(out / name) as picture:
            picture.load()  # decodes: the file is complete
    for item in manifest["inputs"]:
        assert sum(name.startswith(item["key"] + "/") for name in files) == 2
    return manifest


def files_of(out: Path) -> dict[str, bytes]:
    return {path.relative_to(out).as_posix(): path.read_bytes()
            for path in sorted(out.rglob("*.png"))}


def records_of(out: Path) -> list[str]:
    return sorted(json.dumps(record, sort_keys=True) for record in manifest_of(out)["outputs"])


def assert_same_as(out: Path, reference: Path) -> None:
    """Same PNG files, byte for byte, and the same records as the uninterrupted run."""
    assert files_of(out) == files_of(reference)
    assert records_of(out) == records_of(reference)
    assert (sorted(i["key"] for i in manifest_of(out)["inputs"])
            == sorted(i["key"] for i in manifest_of(reference)["inputs"]))
    leftovers = [p for p in out.rglob("*") if TEMPORARY.fullmatch(p.name) or p.name == LOCK]
    assert leftovers == []


# --- the lock -------------------------------------------------------------------------------


def test_a_folder_locked_by_a_live_run_is_refused_and_taken_over_once_it_died(
        run_cli, images, reference, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from cnnviz_cli.io.lock import FolderLock; "
         f"FolderLock({str(out)!r}, 'cam').acquire(); print('held', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=PYTHON_PATH)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = run_cli(*CAM, images, "-o", out, expect=2)
        assert f"Another cnnviz run (process {holder.pid} on {socket.gethostname()}, started" \
            in refused.output
        assert f"is writing into {out}; wait for it to finish or choose another --out" \
            in refused.output
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written
    finally:
        holder.kill()  # SIGKILL: its lock file stays, naming a process that is gone
        holder.wait()
    taken = run_cli(*CAM, images, "-o", out)
    assert (f"Took over the lock on {out} left by process {holder.pid} on "
            f"{socket.gethostname()}") in taken.output
    assert_same_as(out, reference)


def test_a_stale_lock_file_is_taken_over_and_one_from_another_host_is_refused(
        run_cli, images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = {"pid": 2 ** 22 + 12345, "host": socket.gethostname(), "started": "yesterday"}
    (out / LOCK).write_text(json.dumps(stale))
    assert "Took over the lock" in run_cli(*CAM, images, "-o", out).output
    assert not (out / LOCK).exists()

    (out / LOCK).write_text(json.dumps({**stale, "host": "elsewhere.example"}))
    refused = run_cli(*CAM, images, "-o", out, expect=2)
    assert f"{out / LOCK} names a run on another host (process {stale['pid']} on " \
        "elsewhere.example" in refused.output


def test_report_merges_a_folder_whose_run_holds_its_lock(run_cli, reference, tmp_path):
    shard = tmp_path / "shard-1"
    shutil.copytree(reference, shard)
    lock = FolderLock(shard, "cam")
    lock.acquire()
    try:
        run_cli("report", shard, "-o", tmp_path / "merged")
    finally:
        lock.release()
    assert len(manifest_of(tmp_path / "merged")["outputs"]) == len(manifest_of(shard)["outputs"])


@pytest.mark.slow
def test_two_runs_started_into_one_folder_one_runs_the_other_exits_2(forks, tmp_path):
    inputs = write_images(tmp_path / "in", 40)
    out = tmp_path / "out"
    first, second = (forks.start(*CAM, inputs, "-o", out) for _ in range(2))
    results = sorted((run.wait(), run.stderr) for run in (first, second))
    assert [code for code, _ in results] == [0, 2], results
    assert "Another cnnviz run (process" in results[1][1]
    assert len(check_listed(out)["inputs"]) == 40


# --- write errors ---------------------------------------------------------------------------


@pytest.mark.slow  # over ~3 s
def test_no_space_after_some_files_exits_4_and_skip_existing_finishes(
        run_cli, images, tmp_path, monkeypatch):
    import cnnviz_cli.io.outputs as outputs_module

    write = outputs_module.write_atomic
    written = []

    one_at_a_time = threading.Lock()

    def full_after_seven(path, data, **options):  # seven pictures fit; then only the small manifest
        with one_at_a_time:
            if path.suffix == ".png" and len(written) >= 7:
                raise OSError(errno.ENOSPC, "No space left on device")
            write(path, data, **options)
            if path.suffix == ".png":
                written.append(path)

    monkeypatch.setattr(outputs_module, "write_atomic", full_after_seven)
    out = tmp_path / "out"
    failed = run_cli(*CAM, images, "-o", out, "--batch-size", "2", expect=4)
    manifest = check_listed(out)
    listed = len(manifest["inputs"])
    assert 0 < listed <= 3 and len(manifest["outputs"]) >= 2 * listed
    assert failed.output.strip().splitlines()[-1] == (
        f"Error: Cannot write to {out}: No space left on device; {listed} image(s) "
        f"({len(manifest['outputs'])} files) are complete and listed in {out}/manifest.json; "
        "free space or fix the folder, then run again with --skip-existing to finish.")
    assert not [p for p in out.rglob("*") if TEMPORARY.fullmatch(p.name)]

    monkeypatch.setattr(outputs_module, "write_atomic", write)  # space freed
    resumed = run_cli(*CAM, images, "-o", out, "--batch-size", "2", "--skip-existing")
    assert f"Skipping {listed} image(s)" in resumed.output
    uninterrupted = tmp_path / "uninterrupted"
    run_cli(*CAM, images, "-o", uninterrupted, "--batch-size", "2")
    assert_same_as(out, uninterrupted)


def test_a_folder_that_vanishes_mid_run_is_a_write_error_not_recreated(
        run_cli, images, tmp_path, monkeypatch):
    import cnnviz_cli.io.outputs as outputs_module

    out = tmp_path / "out"
    write = outputs_module.write_atomic
    once, moved = threading.Lock(), []

    def vanish_first(path, data, **options):
        with once:  # at the first PNG only, whichever writer thread comes first
            if path.suffix == ".png" and not moved:
                out.rename(tmp_path / "moved away")
                moved.append(path)
        write(path, data, **options)

    monkeypatch.setattr(outputs_module, "write_atomic", vanish_first)
    failed = run_cli(*CAM, images, "-o", out, expect=4)
    assert f"Cannot write to {out}: the folder is gone;" in failed.output
    assert not out.exists() and not list((tmp_path / "moved away").glob("*/*.png"))


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 160 kB tmpfs (its size can be raised with `grow()`), or a skip where mounting fails."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")

    def grow():
        subprocess.run(["mount", "-o", "remount,size=8m", str(mount)], check=True)

    yield mount, grow
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow
def test_a_full_tmpfs_exits_4_and_skip_existing_finishes_once_it_grows(
        small_tmpfs, forks, run_cli, tmp_path):
    mount, grow = small_tmpfs
    inputs = write_images(tmp_path / "in", 80)
    out = mount / "out"
    failed = forks.start(*CAM, inputs, "-o", out)
    assert failed.wait() == 4, failed.stderr
    manifest = check_listed(out)
    assert (f"No space left on device; {len(manifest['inputs'])} image(s)"
            in failed.stderr.splitlines()[-1])
    assert len(manifest["inputs"]) < 80
    grow()
    run_cli(*CAM, inputs, "-o", out, "--skip-existing")  # resumed in-process
    run_cli(*CAM, inputs, "-o", tmp_path / "reference")  # in-process
    assert_same_as(out, tmp_path / "reference")


# --- SIGKILL at five moments ----------------------------------------------------------------


def _pictures(out: Path, since: float) -> int:
    """How many pictures were written into `out` since a time.time()."""
    return sum(path.stat().st_mtime >= since for path in out.glob("*/*.png"))


IMAGES_TO_KILL = 200  # a manifest is rewritten every few seconds: with 80 images, the killed
# runs had listed all of them, and the last run had nothing left to resume


@pytest.mark.slow
def test_killed_at_five_moments_then_resumed_equals_an_uninterrupted_run(
        forks, run_cli, tmp_path):
    inputs = write_images(tmp_path / "in", IMAGES_TO_KILL)
    out = tmp_path / "out"
    options = ["-o", out, "--batch-size", "4", "--skip-existing"]
    listed = [0]

    def moment_reached(number: int, started: float) -> bool:
        """0: the first manifest is on disk; 1, 4: this run wrote 10 or 20 pictures (a batch
        half-written); 2, 3: the manifest has just grown past what the run started with."""
        if number in (0, 1, 4):
            return ((out / "manifest.json").exists()
                    and _pictures(out, started) >= (0, 10, 0, 0, 20)[number])
        return len(manifest_of(out)["inputs"]) > listed[-1]

    for number in range(5):
        started = time.time()
        run = forks.start(*CAM, inputs, *options)
        deadline = time.monotonic() + 120
        while (run.poll() is None and time.monotonic() < deadline
               and not moment_reached(number, started)):
            time.sleep(0.002)
        run.send_signal(signal.SIGKILL)
        run.wait()
        listed.append(len(check_listed(out)["inputs"]))
    assert listed[3] < listed[4] <= listed[5] < IMAGES_TO_KILL, listed
    run_cli(*CAM, inputs, *options)  # finished in-process
    run_cli(*CAM, inputs, "-o", tmp_path / "reference", "--batch-size", "4")  # in-process
    assert_same_as(out, tmp_path / "reference")


def test_leftover_temporaries_are_removed_by_the_next_run(run_cli, images, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    leftovers = [out / "img000" / ".cam-gradcam-x.png.0123456789ab.tmp", out / ".manifest.json"
                 ".ba9876543210.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a fi")
    result = run_cli(*CAM, images, "-o", out, "--skip-existing")
    assert f"Removed 2 temporary file(s) an interrupted run left in {out}." in result.output
    assert_same_as(out, reference)


# --- a missing or corrupt manifest ----------------------------------------------------------


def test_a_truncated_manifest_is_rebuilt_from_the_pngs_and_nothing_finished_is_redone(
        run_cli, images, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    text = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(text[: len(text) // 2])
    for path in (out / "img003").glob("*.png"):  # half of img003: not finished
        path.unlink()
        break
    stripped = next((out / "img005").glob("*.png"))  # without provenance: not finished
    with Image.open(stripped) as picture:
        picture.copy().save(stripped)
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*.png")}
    result = run_cli(*CAM, images, "-o", out, "--skip-existing")
    assert (f"Cannot read {out}/manifest.json" in result.output
            and "rebuilt the list of finished work from the provenance of 22 PNG(s): "
            "10 image(s) are finished." in result.output)
    assert "Skipping 10 image(s)" in result.output
    redone = {path.parent.name for path, mtime in before.items()
              if not path.exists() or path.stat().st_mtime_ns != mtime}
    assert redone == {"img003", "img005"}
    assert_same_as(out, reference)


# --- inputs that vanish or change after listing ----------------------------------------------


def test_an_input_removed_or_broken_after_listing_fails_alone(run_cli, tmp_path, monkeypatch):
    import cnnviz_cli.api.session as session_module

    inputs = write_images(tmp_path / "in", 6)
    collect = session_module.collect_inputs

    def listed_then_changed(images):
        items = collect(images)
        (inputs / "img001.png").unlink()
        (inputs / "img004.png").write_bytes((inputs / "img004.png").read_bytes()[:40])
        return items

    monkeypatch.setattr(session_module, "collect_inputs", listed_then_changed)
    out = tmp_path / "out"
    result = run_cli(*CAM, inputs, "-o", out, expect=1)
    assert "img001.png: it no longer exists (removed after the inputs were listed)." \
        in result.output
    assert "img004.png: not an image Pillow can read." in result.output
    manifest = check_listed(out)
    assert sorted(i["key"] for i in manifest["inputs"]) == ["img000", "img002", "img003",
                                                            "img005"]


# --- the folder opened late, and reused --------------------------------------------------------


def test_out_is_created_only_once_model_and_layer_resolved(run_cli, images, tmp_path,
                                                           monkeypatch):
    import cnnviz_cli.models.layers as layers

    out = tmp_path / "deep" / "out"
    find = layers.find_feature_map

    def no_folder_yet(model, spec):
        assert not (tmp_path / "deep").exists()
        return find(model, spec)

    monkeypatch.setattr(layers, "find_feature_map", no_folder_yet)
    run_cli(*CAM, images, "-l", "no_such_layer", "-o", out, expect=2)
    assert not (tmp_path / "deep").exists()
    run_cli(*CAM, images, "-l", "block4_conv", "-o", out)
    assert len(manifest_of(out)["inputs"]) == 12


def listed_files(out: Path) -> set[str]:
    return {record["file"] for record in manifest_of(out)["outputs"]}


def files_on_disk(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {
        "manifest.json", "index.html"}


def test_a_folder_of_another_run_is_refused_then_replaced_with_force(
        run_cli, images, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = files_of(out)
    refused = run_cli(*CAM, images, "-o", out, "--method", "layercam", expect=2)
    assert (f"{out} holds the outputs of an earlier run with different methods; add --force "
            "to replace them, or choose another --out.") in refused.output
    other = run_cli("-q", "activations", images, "-o", out, expect=2)
    assert "an earlier run with different command (cam); add --force" in other.output
    assert files_of(out) == before and manifest_of(out) == manifest_of(reference)

    replaced = run_cli("-q", "cam", images, "-o", out, "--method", "layercam", "--force")
    assert f"Replacing the 24 files of an earlier run with different methods in {out}" \
        in replaced.output
    assert listed_files(out) == files_on_disk(out)
    assert all("layercam" in name for name in listed_files(out))


def test_the_same_setup_on_other_images_keeps_the_earlier_images_listed(
        run_cli, images, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    more = write_images(tmp_path / "more", 3)
    for path in more.iterdir():
        path.rename(more / f"extra-{path.name}")
    result = run_cli(*CAM, more, "-o", out)
    assert f"Kept the outputs of 12 image(s) an earlier run into {out} finished" in result.output
    assert len(manifest_of(out)["inputs"]) == 15
    assert listed_files(out) == files_on_disk(out)


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path, monkeypatch):
    import cnnviz_cli.io.outputs as outputs_module

    def refuse(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs_module.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        outputs_module.write_atomic(tmp_path / "sub" / "x.png", b"data")
    assert [p.name for p in tmp_path.rglob("*")] == ["sub"]


def test_files_enter_the_manifest_only_once_written(tmp_path, monkeypatch):
    import cnnviz_cli.io.outputs as outputs_module

    gate = threading.Event()
    write = outputs_module.write_atomic

    def slow_write(path, data, **options):
        if path.suffix == ".png":  # the manifest itself is written at once
            gate.wait(10)
        write(path, data, **options)

    monkeypatch.setattr(outputs_module, "write_atomic", slow_write)
    outputs = outputs_module.Outputs(tmp_path, "probe", {})
    outputs.begin_batch([{"input": "a.png", "key": "a"}])
    for index in range(3):
        outputs.save_png(f"a/{index}.png", np.zeros((4, 4, 3), np.uint8), {"index": index})
    outputs.end_batch()
    from cnnviz_cli.io.manifests import manifest_of, write_manifest

    written = json.loads(write_manifest(outputs))
    assert written["outputs"] == [] and written["inputs"] == []
    gate.set()
    outputs.flush()
    final = manifest_of(outputs)
    assert [record["index"] for record in final["outputs"]] == [0, 1, 2]
    assert final["inputs"] == [{"input": "a.png", "key": "a"}]
    assert all((tmp_path / record["file"]).is_file() for record in final["outputs"])
    outputs.close()


def test_write_error_surfaces_and_batch_stays_unfinished(tmp_path, monkeypatch):
    import cnnviz_cli.io.outputs as outputs_module
    from cnnviz_cli.errors import CnnvizError

    def failing_write(path, data, **options):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs_module, "write_atomic", failing_write)
    outputs = outputs_module.Outputs(tmp_path, "probe", {})
    outputs.begin_batch([{"input": "a.png", "key": "a"}])
    outputs.save_png("a/x.png", np.zeros((4, 4), np.uint8), {})
    outputs.end_batch()
    with pytest.raises(CnnvizError, match="No space left on device"):
        outputs.flush()
    assert outputs.inputs == [] and outputs.records == []
    outputs.close()

