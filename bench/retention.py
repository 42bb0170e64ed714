"""A long run through one head: journal size and head RSS as tasks pile up, then a restart.

    .venv/bin/python -m bench.retention                      # 1,000,000 tasks (20-40 minutes)
    .venv/bin/python -m bench.retention --tasks 100000       # a shorter run
    .venv/bin/python -m bench.retention --max-tasks 1000000  # another journal retention

The head is a real ``macp node start --config`` process (its topology file, journal and log
in a temporary folder), with four echo agents; this process submits tiny tasks to it through
``macp.connect``, a window of them at a time, and every ``--every`` tasks prints one JSON line
(tasks done, tasks/s, journal bytes with its WAL, rows in the journal, head RSS). Then it
waits for the pruning to catch up, stops the head, starts it again on the same journal, and
prints the restart's figures: time to ready, RSS, and what the oldest and newest tasks
answer. The pruner's own reports (``coordinator.pruned``: rows, passes, slowest pass) are
summed from the head's log. Not part of ``python -m bench`` nor of CI: it runs for minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

import macp
from macp.actors.coordinator import SUBMIT
from macp.cli import STOP_WITH_PARENT

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = """
name: retention
nodes:
  - {{name: head, listen: "tcp://127.0.0.1:{port}", head: true}}
agents:
  - {{name: echo, class: "bench.agents:Echo", replicas: 4}}
coordinator: {{max_in_flight: 64}}
settings:
  journal: journal.sqlite3
  journal_retention: {retention}
"""


class Head:
    """The head process; :meth:`start` returns once it printed node.ready."""

    def __init__(self, file: Path, log: Path) -> None:
        self.file, self.log = file, log
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> float:
        started = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(ROOT), STOP_WITH_PARENT: str(os.getpid())}
        env.pop("MACP_DATA_DIR", None)
        with self.log.open("a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "macp", "node", "start", "--config", str(self.file),
                 "--node", "head", "--log-json", "--log-level", "info"],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env,
            )  # fmt: skip
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if '"node.ready"' in line:
                break
        else:
            raise SystemExit(f"the head did not start; see {self.log}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # drain
        return time.perf_counter() - started

    def rss_mb(self) -> float:
        assert self.proc is not None
        return float(psutil.Process(self.proc.pid).memory_info().rss / 2**20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


def _journal(folder: Path) -> dict[str, Any]:
    files = [folder / f"journal.sqlite3{ext}" for ext in ("", "-wal")]
    size = sum(f.stat().st_size for f in files if f.exists())
    with contextlib.closing(sqlite3.connect(folder / "journal.sqlite3", timeout=30)) as db:
        rows = db.execute("SELECT count(*) FROM tasks").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return {"journal_mb": round(size / 2**20, 1), "rows": rows, "free_pages": free}


def _pruned(log: Path) -> dict[str, Any]:
    """The head's coordinator.pruned reports, summed: rows, passes, the mean pass, and the
    slowest pass of each 10 s window (median and maximum)."""
    reports = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()
               if '"coordinator.pruned"' in line]  # fmt: skip
    if not reports:
        return {"tasks": 0, "passes": 0}
    passes = sum(r["passes"] for r in reports)
    slowest = sorted(r["slowest_ms"] for r in reports)
    mean_ms = sum(r["mean_ms"] * r["passes"] for r in reports) / passes
    return {"tasks": sum(r["tasks"] for r in reports), "passes": passes,
            "mean_ms": round(mean_ms, 1), "window_slowest_ms_p50": slowest[len(slowest) // 2],
            "slowest_ms": slowest[-1]}  # fmt: skip


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _submit_all(cluster: macp.Cluster, head: Head, folder: Path, args: argparse.Namespace) -> str:
    """Run ``args.tasks`` tasks, printing a line every ``args.every``; the first task's id."""
    coordinator = f"coordinator@{cluster.head}"
    first = ""
    started = last_t = time.perf_counter()
    done = last_n = 0
    while done < args.tasks:
        n = min(args.window, args.tasks - done)
        futures = [
            cluster.node.ask(
                coordinator,
                SUBMIT,
                {"type": "echo", "body": done + i, "idempotency_key": f"k{done + i}"},
                timeout_s=300,
            )
            for i in range(n)
        ]
        ids = [f.get()["task_id"] for f in futures]
        first = first or ids[0]
        cluster.result(ids[-1], timeout_s=300)
        done += n
        if done - last_n >= args.every or done == args.tasks:
            now = time.perf_counter()
            rate = (done - last_n) / (now - last_t)
            _emit(phase="run", tasks=done, tasks_per_s=round(rate), s=round(now - started, 1),
                  rss_mb=round(head.rss_mb(), 1), **_journal(folder))  # fmt: skip
            last_n, last_t = done, now
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000, help="a line every N tasks")
    parser.add_argument("--window", type=int, default=2_000, help="submits in flight")
    parser.add_argument("--max-tasks", default="100000", help="journal_retention.max_tasks")
    parser.add_argument("--keep", help="keep the run's folder here (default: a temporary one)")
    args = parser.parse_args()
    retention = "{}" if args.max_tasks == "100000" else f"{{max_tasks: {args.max_tasks}}}"
    with tempfile.TemporaryDirectory(prefix="macp-retention-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        file = folder / "topology.yaml"
        file.write_text(TOPOLOGY.format(port=port, retention=retention), encoding="utf-8")
        head = Head(file, folder / "head.log")
        address = f"tcp://127.0.0.1:{port}"
        try:
            _emit(phase="start", ready_s=round(head.start(), 2), rss_mb=round(head.rss_mb(), 1))
            with macp.connect(address, timeout_s=60) as cluster:
                cluster.wait_for_agents([f"echo-{i}@head" for i in range(1, 5)], 60)
                first = _submit_all(cluster, head, folder, args)
                bound = None if args.max_tasks == "null" else int(args.max_tasks)
                deadline = time.monotonic() + 300
                while bound is not None and _journal(folder)["rows"] > bound:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(1)  # the pruner's pace, measured; not a test
                _emit(phase="before_restart", rss_mb=round(head.rss_mb(), 1), **_journal(folder),
                      pruned=_pruned(head.log))  # fmt: skip
            head.stop()
            ready_s = head.start()
            _emit(phase="after_restart", ready_s=round(ready_s, 2),
                  rss_mb=round(head.rss_mb(), 1), **_journal(folder))  # fmt: skip
            with macp.connect(address, timeout_s=60) as cluster:
                newest = f"k{args.tasks - 1}"
                again = cluster.submit("echo", None, idempotency_key=newest)
                try:
                    oldest: Any = cluster.status(first)["state"]
                except macp.InvalidParams as e:
                    oldest = e.message
                _emit(phase="answers", newest_key_result=again.result(), oldest=oldest,
                      rss_mb=round(head.rss_mb(), 1))  # fmt: skip
        finally:
            head.stop()


if __name__ == "__main__":
    main()
