"""`cnnviz` runs in real processes that start in milliseconds: forks of one server process that
imported cnnviz, TensorFlow and Keras once, before running any TensorFlow op (a new process
spends seconds on those imports). Each fork runs the console script's `main` with its arguments.
"""

import itertools
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The server reads a line of JSON per run (its arguments, and the file its standard error goes
# to) and answers "started PID"; "ended PID CODE" follows once the fork ended (CODE -N if signal
# N ended it). SIGCHLD is blocked while it forks and answers, so the two never interleave.
SERVER = """
import json, os, signal, sys
import cnnviz_cli.api, cnnviz_cli.cli, cnnviz_cli.quiet_tf
cnnviz_cli.quiet_tf.import_tensorflow()

def reap(*_):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        print("ended", pid, os.waitstatus_to_exitcode(status), flush=True)

signal.signal(signal.SIGCHLD, reap)
for line in sys.stdin:
    request = json.loads(line)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        sys.argv = ["cnnviz", *request["args"]]
        try:
            cnnviz_cli.cli.main()
            code = 0
        except SystemExit as end:
            code = end.code if isinstance(end.code, int) else 1
        os._exit(code)
    print("started", pid, flush=True)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
"""


class Run:
    """One forked `cnnviz` run, used like a `subprocess.Popen`."""

    def __init__(self, forks: "Forks", pid: int, stderr: Path):
        self._forks, self.pid, self._stderr = forks, pid, stderr

    @property
    def returncode(self) -> int | None:
        """The exit code once the run ended (-N if signal N ended it), else None."""
        return self._forks.ended(self.pid, block=False)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self) -> int:
        return self._forks.ended(self.pid, block=True)

    def send_signal(self, number: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, number)

    @property
    def stderr(self) -> str:
        """What the run wrote to its standard error so far."""
        return self._stderr.read_text(encoding="utf-8", errors="replace")


class Forks:
    """A server that forks `cnnviz` runs (`with Forks(folder) as forks:`); their standard output
    is discarded, their standard error kept in a file of `folder`."""

    def __init__(self, folder: Path):
        self._folder, self._numbers = folder, itertools.count()
        self._said, self._started, self._codes = b"", [], {}
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self._log = (folder / "server.stderr").open("w")
        self._server = subprocess.Popen(  # unbuffered: select() sees every line not yet read
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, bufsize=0, env=environment)
        self._runs: list[Run] = []

    def start(self, *args) -> Run:
        """A run of `cnnviz ARGS...`."""
        stderr = self._folder / f"run-{next(self._numbers)}.stderr"
        request = {"args": [str(arg) for arg in args], "stderr": str(stderr)}
        self._server.stdin.write(json.dumps(request).encode() + b"\n")
        while not self._started:
            self._listen(block=True)
        self._runs.append(Run(self, self._started.pop(), stderr))
        return self._runs[-1]

    def ended(self, pid: int, block: bool) -> int | None:
        """The exit code of the run `pid`, waiting for it if `block`, else None if it runs."""
        self._listen(block=False)
        while block and pid not in self._codes:
            self._listen(block=True)
        return self._codes.get(pid)

    def _listen(self, block: bool) -> None:
        """Take in what the server said (waiting for it if `block`)."""
        stream = self._server.stdout
        if block or select.select([stream], [], [], 0)[0]:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"the fork server ended; see {self._folder / 'server.stderr'}"
            self._said += chunk
        *lines, self._said = self._said.split(b"\n")
        for kind, pid, *code in map(bytes.split, lines):
            if kind == b"started":
                self._started.append(int(pid))
            else:
                self._codes[int(pid)] = int(code[0])

    def __enter__(self) -> "Forks":
        return self

    def __exit__(self, *exception) -> None:
        for run in self._runs:
            run.send_signal(signal.SIGKILL)
            run.wait()
        self._server.stdin.close()
        self._server.wait(timeout=60)
        self._log.close()
