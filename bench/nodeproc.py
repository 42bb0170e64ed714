"""``python -m bench.nodeproc --parent PID ARGS...``: the ``macp ARGS...`` command (the real
CLI, in this process), which also stops by itself once process ``PID`` is gone.

The benchmark starts its ``macp node start`` children through this wrapper, so that a benchmark
killed with SIGKILL (no clean-up of its own) leaves no node process behind: a watcher thread
sees the parent change and sends this process SIGTERM, which the CLI handles as a clean stop.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

__all__ = ["main"]

_POLL_S = 0.5


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] != "--parent":
        sys.exit("usage: python -m bench.nodeproc --parent PID ARGS...")
    parent = int(sys.argv[2])
    threading.Thread(target=_watch, args=(parent,), name="bench-parent-watch", daemon=True).start()
    sys.argv = ["macp", *sys.argv[3:]]
    from macp.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
