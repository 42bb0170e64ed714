"""Child processes: macp node processes, the raw pyzmq peer, one-shot measurements.

Every child is tracked from the moment it is started until it has been reaped, so that the
runner (and its watchdog, when a workload hangs) can end them all: SIGTERM first, SIGKILL after
a grace period. Children run with the repository root on ``PYTHONPATH`` (so ``bench.agents``
imports) and with ``MACP_STRICT=0``. Their standard error goes to a temporary file, whose tail
is shown when a child fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bench.core import BenchError, BenchTimeout

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bench.core import Deadline

__all__ = [
    "REPO",
    "Child",
    "Soak",
    "child_env",
    "kill_all",
    "macp_node",
    "raw_peer",
    "run_to_end",
]

REPO = Path(__file__).resolve().parent.parent
_LOOPBACK = "tcp://127.0.0.1:0"
_TERM_GRACE_S = 5.0

_live: set[subprocess.Popen[str]] = set()
_live_lock = threading.Lock()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["MACP_STRICT"] = "0"
    return env


def _track(proc: subprocess.Popen[str]) -> None:
    with _live_lock:
        _live.add(proc)


def _untrack(proc: subprocess.Popen[str]) -> None:
    with _live_lock:
        _live.discard(proc)


def _end(proc: subprocess.Popen[str], grace_s: float) -> int | None:
    """SIGTERM, wait ``grace_s``, then SIGKILL; the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(_TERM_GRACE_S)
    _untrack(proc)
    return proc.returncode


def kill_all() -> None:
    """SIGKILL every child still running (the watchdog's last resort)."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, OSError):
            proc.kill()


def _tail(file: IO[str], lines: int = 20) -> str:
    try:
        file.flush()
        file.seek(0)
        return "".join(file.readlines()[-lines:])
    except (OSError, ValueError):
        return ""


def _stacks(pid: int) -> str:
    """The threads' stacks of a live process that is stuck, if py-spy (the bench extra) is
    installed; else nothing."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return ""
    try:
        done = subprocess.run(
            [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"\n(py-spy dump failed: {e})"
    return f"\nits threads (py-spy dump):\n{done.stdout}{done.stderr}"


class Child:
    """A long-running child that prints one JSON ``ready`` line on standard output."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self._lines: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._stderr: IO[str] = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self._reader: threading.Thread | None = None
        self._unparsed: list[str] = []  # standard output lines that were not JSON records
        self._early: deque[dict[str, Any]] = deque()  # records printed before the ready line

    def start(self, deadline: Deadline, event: str) -> dict[str, Any]:
        """Start the process; return its ``event`` line once printed (or fail loudly)."""
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=child_env(),
            cwd=REPO,
        )
        _track(self.proc)
        self._reader = threading.Thread(
            target=self._read, name=f"bench-read-{self.name}", daemon=True
        )
        self._reader.start()
        while True:
            try:
                left = deadline.remaining(f"waiting for {self.name} to be ready")
            except BenchTimeout as e:
                raise BenchTimeout(self._failure(str(e))) from None
            try:
                line = self._lines.get(timeout=min(0.1, left))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise BenchError(self._failure("exited before it was ready")) from None
                continue
            if line is None:
                raise BenchError(self._failure("closed its standard output before it was ready"))
            if line.get("event") == event:
                self.ready = line
                return line
            self._early.append(line)

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        with self.proc.stdout as stdout:
            for raw in stdout:
                try:
                    record = json.loads(raw)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    self._lines.put(record)
                else:
                    self._unparsed = [*self._unparsed[-4:], raw.rstrip("\n")]
        self._lines.put(None)

    def _failure(self, what: str) -> str:
        code = self.proc.poll() if self.proc is not None else None
        tail = _tail(self._stderr)
        message = f"{self.name} {what} (exit code {code}); its standard error ends with:\n{tail}"
        if self._unparsed:
            message += "\nits standard output had lines that are not JSON records:\n"
            message += "\n".join(self._unparsed)
        if code is None and self.proc is not None:
            message += _stacks(self.proc.pid)
        return message

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def next_record(self, timeout_s: float) -> dict[str, Any] | None:
        """The next JSON line other than the ready line (those printed before it first),
        waiting at most ``timeout_s``; ``None`` if there was none in time (or the child closed
        its standard output)."""
        if self._early:
            return self._early.popleft()
        try:
            return self._lines.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def kill(self) -> None:
        """SIGKILL, at once (:meth:`stop` still reaps it)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def stop(self, grace_s: float = _TERM_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; reap it and its reader; the exit code."""
        code = None
        if self.proc is not None:
            code = _end(self.proc, grace_s)
        if self._reader is not None:
            self._reader.join(_TERM_GRACE_S)
        self._stderr.close()
        return code


def macp_node(name: str, agents: Mapping[str, str], deadline: Deadline, *flags: str) -> Child:
    """Start ``macp node start`` listening on loopback with ``agents`` (``name -> mod:Class``)
    and any further ``flags``; through :mod:`bench.nodeproc`, so it stops by itself if the
    benchmark dies without stopping it."""
    argv = [sys.executable, "-m", "bench.nodeproc", "--parent", str(os.getpid())]
    argv += ["node", "start", "--name", name, "--listen", _LOOPBACK]
    for agent, path in agents.items():
        argv += ["--agent", f"{agent}={path}"]
    argv += [*flags, "--log-level", "warning", "--log-json"]
    child = Child(f"node {name}", argv)
    try:
        child.start(deadline, "node.ready")
    except BaseException:
        child.stop(grace_s=1.0)
        raise
    return child


def raw_peer(deadline: Deadline) -> Child:
    """Start the bare pyzmq peer (:mod:`bench.peer`) listening on loopback."""
    argv = [sys.executable, "-m", "bench.peer", "--bind", _LOOPBACK, "--parent", str(os.getpid())]
    child = Child("raw peer", argv)
    try:
        child.start(deadline, "peer.ready")
    except BaseException:
        child.stop(grace_s=1.0)
        raise
    return child


_BUSY_LOOP = """\
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""
"""``while True: pass``, except that it ends by itself (within a few tens of ms) once its
parent is gone, so that even a benchmark killed with SIGKILL leaves no busy loop behind."""


class Soak:
    """``count`` busy-loop processes that keep every core busy until :meth:`stop`; tracked
    like every child, so the watchdog and the runner end them too, and each ends by itself if
    the benchmark dies."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._procs: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        for _ in range(self.count):
            proc = subprocess.Popen(
                [sys.executable, "-c", _BUSY_LOOP, str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            _track(proc)
            self._procs.append(proc)

    def stop(self) -> None:
        """SIGKILL each busy loop (they hold no state) and reap it; safe to call twice."""
        procs, self._procs = self._procs, []
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in procs:
            _end(proc, 1.0)


def run_to_end(name: str, argv: list[str], deadline: Deadline) -> str:
    """Run a one-shot child to completion within the deadline; its standard output."""
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=child_env(),
            cwd=REPO,
        )
        _track(proc)
        try:
            out, _ = proc.communicate(timeout=deadline.remaining(f"running {name}"))
        except subprocess.TimeoutExpired:
            raise BenchTimeout(
                f"{name} did not finish within the budget; standard error:\n{_tail(stderr)}"
            ) from None
        finally:
            _end(proc, 1.0)
        if proc.returncode != 0:
            raise BenchError(
                f"{name} exited with code {proc.returncode}; standard error:\n{_tail(stderr)}"
            )
        return out
