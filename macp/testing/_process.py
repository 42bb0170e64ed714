"""A node as a real OS process: ``macp node start`` on this host, for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any, Self

from macp.cli import STOP_WITH_PARENT
from macp.testing._logs import LogEvents
from macp.testing._waits import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import TracebackType

    from macp.settings import Settings

__all__ = ["NodeProcess", "settings_flags"]


def settings_flags(settings: Settings) -> tuple[str, ...]:
    """The ``macp node start`` flags giving a node process these settings' liveness and
    message limit, so that it agrees with a node in this process on when a peer is down.
    (The strict setting goes by the ``MACP_STRICT`` environment variable, which children
    inherit.)"""
    return (
        "--heartbeat-s", str(settings.heartbeat_interval_s),
        "--acceptable-pause-s", str(settings.acceptable_pause_s),
        "--max-message-bytes", str(settings.max_message_bytes),
    )  # fmt: skip


class NodeProcess:
    """One ``macp node start`` subprocess, logging JSON lines; :meth:`start` returns once it
    printed ``node.ready`` (it listens, and the head's registry holds its agents if it has a
    head that answered). The process is tied to this one: if this process dies, it stops.

    Args:
        name: the node's name.
        args: more ``macp node start`` flags (``--agent``, ``--head``, ``--peer``...).
        listen: the address to listen on (port 0: a free one; :attr:`address` is the real one).
        config: a topology file: run its node ``name`` (``--config FILE --node NAME``; the
            file gives the address, so ``listen`` is not used).
        env: environment variables to add for the process.
        environ: the environment to add them to (this process's by default).
        pythonpath: directories the process imports agents from (before ``PYTHONPATH``).
        cwd: the process's working directory (this one's by default).
    """

    def __init__(
        self,
        name: str,
        *args: str,
        listen: str = "tcp://127.0.0.1:0",
        config: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        pythonpath: Iterable[str | os.PathLike[str]] = (),
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        where = ["--name", name, "--listen", listen]
        if config is not None:
            where = ["--config", os.fspath(config), "--node", name]
        self.args = [*where, *args]
        self.environ = dict(os.environ if environ is None else environ)
        self.extra_env = dict(env or {})
        self.pythonpath = [os.fspath(p) for p in pythonpath]
        self.cwd = cwd
        self.address: str | None = None
        self.ready: dict[str, Any] = {}  # the node.ready line
        self.proc: subprocess.Popen[str] | None = None
        self.stderr: list[str] = []
        self._readers: list[threading.Thread] = []
        self._ready = threading.Event()

    def start(self, timeout_s: float = 20.0) -> Self:
        """Start the process; return once it printed ``node.ready``.

        Raises:
            AssertionError: it ended, or printed nothing within ``timeout_s`` (the message
                holds the end of its standard error); it is killed then.
        """
        return self.launch().wait_ready(timeout_s)

    def launch(self) -> Self:
        """Start the process and return at once (several can start side by side); then
        :meth:`wait_ready`."""
        path = [*self.pythonpath, self.environ.get("PYTHONPATH", "")]
        env = {
            **self.environ,
            "PYTHONPATH": os.pathsep.join(p for p in path if p),
            STOP_WITH_PARENT: str(os.getpid()),  # a killed test run leaves no node behind
            **self.extra_env,
        }
        self.proc = subprocess.Popen(  # noqa: S603 - this Python, macp's own command
            [sys.executable, "-m", "macp", "node", "start", *self.args, "--log-json"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.cwd,
        )
        self._ready = threading.Event()
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self._ready,), daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        return self

    def wait_ready(self, timeout_s: float = 20.0) -> Self:
        """Wait until the process launched printed ``node.ready``.

        Raises:
            AssertionError: it ended, or printed nothing within ``timeout_s`` (the message
                holds the end of its standard error); it is killed then.
        """
        if not self._ready.wait(timeout_s) or self.address is None:
            self.kill()
            raise AssertionError(f"node {self.name} did not start:\n" + "".join(self.stderr[-20:]))
        return self

    def _read_stdout(self, ready: threading.Event) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        with self.proc.stdout as stdout:
            for line in stdout:
                if '"node.ready"' in line:
                    (self.ready,) = LogEvents.from_json_lines([line])
                    self.address = self.ready["address"]
                    ready.set()
        ready.set()

    def _read_stderr(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        with self.proc.stderr as stderr:
            for line in stderr:
                self.stderr.append(line)

    def logs(self, event: str | None = None, **fields: Any) -> LogEvents:
        """The JSON log records written so far (of ``event`` with ``fields``, if given)."""
        records = LogEvents.from_json_lines(list(self.stderr))
        return records if event is None and not fields else LogEvents(records.find(event, **fields))

    def wait_for_log(self, event: str, timeout_s: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Wait until the process logs ``event`` with ``fields``; the first such record.

        Raises:
            AskTimeout: it did not within ``timeout_s``.
        """
        found: list[dict[str, Any]] = []

        def logged() -> bool:
            found[:] = self.logs(event, **fields)
            return bool(found)

        wait_until(logged, timeout_s, f"{self.name} did not log {event} {fields}")
        return found[0]

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then wait; the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        self._join_readers()
        return code

    def kill(self) -> None:
        """SIGKILL (``kill -9``), then reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._join_readers()

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Self:
        """Start the process, unless it was started already (``with NodeProcess(...).start()``
        is one process, killed at the end of the block)."""
        return self if self.proc is not None else self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
