"""Node processes for tests: ``macp node start`` as a real OS process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from macp import Settings
from macp.cli import STOP_WITH_PARENT
from macp.testing import wait_until

TESTS = Path(__file__).parent

# Fast liveness for clusters under test: a node in this process with QUICK_CLUSTER, node
# processes with QUICK_CLUSTER_FLAGS, so both sides agree on when a peer is down.
QUICK_CLUSTER = Settings(
    strict=True,
    supervisor_check_interval_s=0.05,
    ask_timeout_s=5.0,
    heartbeat_interval_s=0.1,
    acceptable_pause_s=0.2,
)
QUICK_CLUSTER_FLAGS = ("--heartbeat-s", "0.1", "--acceptable-pause-s", "0.2")


class NodeProcess:
    """One ``macp node start`` subprocess; :meth:`start` returns once it prints its address."""

    def __init__(
        self,
        name: str,
        *args: str,
        listen: str = "tcp://127.0.0.1:0",
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.extra_env = dict(env or {})
        self.args = ["--name", name, "--listen", listen, *args]
        self.address: str | None = None
        self.ready: dict[str, Any] = {}  # the node.ready line
        self.proc: subprocess.Popen[str] | None = None
        self.stderr: list[str] = []

    def start(self, timeout_s: float = 20.0) -> NodeProcess:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            STOP_WITH_PARENT: str(os.getpid()),  # a killed test run leaves no node behind
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "macp", "node", "start", *self.args, "--log-json"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        ready = threading.Event()
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(ready,), daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        if not ready.wait(timeout_s) or self.address is None:
            self.kill()
            raise AssertionError(f"node {self.name} did not start:\n" + "".join(self.stderr[-20:]))
        return self

    def _read_stdout(self, ready: threading.Event) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        with self.proc.stdout as stdout:
            for line in stdout:
                if '"node.ready"' in line:
                    self.ready = json.loads(line)
                    self.address = self.ready["address"]
                    ready.set()
        ready.set()

    def _read_stderr(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        with self.proc.stderr as stderr:
            for line in stderr:
                self.stderr.append(line)

    def logs(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of ``event`` written so far."""
        found = []
        for line in list(self.stderr):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                found.append(record)
        return found

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
        for reader in getattr(self, "_readers", []):
            reader.join(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def wait_for_log(
    proc: NodeProcess, event: str, timeout_s: float = 10.0, **fields: Any
) -> dict[str, Any]:
    """Wait until ``proc`` logs ``event`` with ``fields``; that record."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [r for r in proc.logs(event) if all(r.get(k) == v for k, v in fields.items())]
        return bool(found)

    wait_until(seen, timeout_s, f"{proc.name} did not log {event} {fields}")
    return found[0]
