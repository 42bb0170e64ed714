"""Run the selected workloads, each under a deadline and a watchdog; print what they measured.

Standard output carries only JSON lines (figures, ratios, and one ``error`` line per failed
workload); progress, notes and the final table go to standard error. The exit code is 0 when
every workload passed, 1 when one failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING

from bench import procs, report
from bench.core import Ctx, Deadline, Figure, load_workloads, log

if TYPE_CHECKING:
    from bench.core import Workload

__all__ = ["main"]

_HARD_GRACE_S = 30.0
"""How long past its budget a workload may take to clean up before the watchdog ends it all."""


class _Watchdog:
    """Ends the whole run if a workload is still going ``limit_s`` after it started.

    Every wait in a workload is bounded by its deadline, so this fires only for a hang nothing
    bounded (a stuck ``stop()``, a deadlock): it dumps every thread's stack, kills the child
    processes and exits with code 3.
    """

    def __init__(self, workload: str, limit_s: float) -> None:
        self._workload = workload
        self._limit_s = limit_s
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._cancelled.wait(self._limit_s):
            return
        log(f"{self._workload} is still running {self._limit_s:g} s after it started: a hang")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        procs.kill_all()
        os._exit(3)

    def cancel(self) -> None:
        self._cancelled.set()
        self._thread.join()


def _parse(argv: list[str] | None, known: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="macp benchmarks against bare pyzmq/queue (raw) and bare Pykka, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller N (still 3 samples)")
    parser.add_argument("--only", default="", help=f"comma-separated workloads: {','.join(known)}")
    parser.add_argument("--peers", action="store_true", help="also Ray and Thespian, if installed")
    parser.add_argument("--samples", type=int, default=3, help="samples per figure (at least 3)")
    args = parser.parse_args(argv)
    if args.samples < 3:
        parser.error(f"--samples {args.samples}: each figure is a median of at least 3 samples")
    only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in only if w not in known]
    if unknown:
        parser.error(f"--only {','.join(unknown)}: unknown workload; choose from {','.join(known)}")
    args.only = only
    return args


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _run_one(workload: Workload, args: argparse.Namespace) -> list[Figure]:
    budget_s = workload.quick_budget_s if args.quick else workload.budget_s
    ctx = Ctx(
        workload=workload.id,
        quick=args.quick,
        peers=args.peers,
        samples=args.samples,
        deadline=Deadline(budget_s, workload.id),
    )
    watchdog = _Watchdog(workload.id, budget_s + _HARD_GRACE_S)
    try:
        return workload.run(ctx)
    finally:
        for cleanup in reversed(ctx.cleanups):
            try:
                cleanup()
            except Exception as e:
                log(f"{workload.id}: cleanup {cleanup!r} failed: {type(e).__name__}: {e}")
        watchdog.cancel()


def main(argv: list[str] | None = None) -> int:
    workloads = load_workloads()
    args = _parse(argv, [w.id for w in workloads])
    selected = [w for w in workloads if not args.only or w.id in args.only]
    from macp import configure_logging, tune_gc

    configure_logging(level="warning")  # macp's own warnings, on standard error
    tune_gc()  # as every node process does; the baselines in this process share it
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    mode = "quick" if args.quick else "full"
    log(f"{mode} run of {', '.join(w.id for w in selected)}, {args.samples} samples per figure")
    try:
        for workload in selected:
            log(f"{workload.id}: {workload.title}")
            t0 = time.monotonic()
            try:
                produced = _run_one(workload, args)
            except Exception as e:
                message = f"{type(e).__name__}: {e}"
                failures[workload.id] = message
                traceback.print_exc(file=sys.stderr)
                log(f"{workload.id}: FAILED after {time.monotonic() - t0:.1f} s: {message}")
                report.emit([{"workload": workload.id, "error": message}])
                continue
            log(f"{workload.id}: done in {time.monotonic() - t0:.1f} s")
            figures.extend(produced)
            report.emit(f.to_json() for f in produced)
            report.emit(report.ratios(produced))
    except KeyboardInterrupt:
        log("interrupted; stopping child processes")
        return 130
    finally:
        procs.kill_all()  # every workload stops its own; this is the safety net
    titles = {w.id: w.title for w in workloads}
    report.print_table(report.table(figures, titles, failures, time.monotonic() - started))
    return 1 if failures else 0
