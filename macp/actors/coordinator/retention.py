"""How long the coordinator's journal keeps finished tasks and workflow runs, and with them
their idempotency keys: the options, and the pruner that applies them in batches.

Two bounds, whichever comes first: an age (a finished task or run is kept ``max_age_s`` after
it finished, 24 h by default) and a count (at most the newest ``max_tasks`` finished tasks and
``max_runs`` finished runs). The age is the contract a client relies on: a task's result,
status and idempotency key answer for a day after it finished, the window Stripe keeps its
idempotency keys and Celery its results (``result_expires``) by default, long enough for any
client to retry after a crash or a lost answer. The count bounds the file whatever the
throughput: 100,000 tasks of a few hundred bytes each are some 60 MB, where a head running
1,000 tasks a second would otherwise keep 86 million. A task or run that has not finished is
never pruned, whatever its age, so a key of work in progress never expires.

A key lives as long as its task: it is stored in the task's row, so pruning the task expires
its key, and a later submit with that key is a new task. Once the result is gone, answering
the key with the id of a task nobody can read would help no one.

The pruner runs on the coordinator's tick (every 0.25 s): one pass deletes at most
:data:`PRUNE_BATCH` rows per table in one short transaction (a few milliseconds), oldest finish
first, and gives some freed pages back to the file system (:mod:`macp._journal_retention`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any, Final, Self

from pydantic import Field

from macp.envelope import now_ms
from macp.errors import ConfigError
from macp.schema import Schema, check

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.store import Journal

__all__ = ["PRUNE_BATCH", "RECOUNT_PASSES", "REPORT_S", "JournalRetention", "Pruned", "Pruner"]

PRUNE_BATCH: Final = 2_000  # rows per table and pass: about 10 ms, 8,000 rows a second
REPORT_S: Final = 10.0  # at most one coordinator.pruned line this often
RECOUNT_PASSES: Final = 240  # passes between two exact counts of the finished rows (a minute)


class JournalRetention(Schema):
    """How long the journal keeps finished tasks and workflow runs (and their idempotency
    keys): a topology file's ``settings.journal_retention``, and
    ``start_control_plane(retention=...)``. Each bound may be null (no such bound)."""

    max_age_s: Annotated[float, Field(strict=True, gt=0)] | None = Field(
        default=86_400.0,
        description="Seconds a finished task or run (and its idempotency key) is kept after "
        "it finished.",
    )
    max_tasks: Annotated[int, Field(strict=True, ge=1)] | None = Field(
        default=100_000, description="The most finished tasks kept; the oldest go first."
    )
    max_runs: Annotated[int, Field(strict=True, ge=1)] | None = Field(
        default=10_000, description="The most finished workflow runs kept; the oldest go first."
    )

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Self:
        """The retention in the coordinator's ``config["retention"]`` (the defaults if none).

        Raises:
            ConfigError: an option is malformed or unknown (named in the message).
        """
        return check(cls, config.get("retention") or {}, "journal_retention", ConfigError)


class Pruned:
    """What one pass deleted: task ids and run ids, and how long it took."""

    __slots__ = ("runs", "seconds", "tasks")

    def __init__(self, tasks: list[str], runs: list[str], seconds: float) -> None:
        self.tasks, self.runs, self.seconds = tasks, runs, seconds


class Pruner:
    """Applies a :class:`JournalRetention` to a journal, a batch at a time.

    It keeps a count of the finished rows of each table (counted exactly at start and every
    :data:`RECOUNT_PASSES` passes, told of each finish by :meth:`finished` in between), so the
    count bound deletes the oldest rows past it without walking the newest ``max_tasks``.
    """

    def __init__(self, journal: Journal, retention: JournalRetention) -> None:
        self.journal = journal
        self.retention = retention
        self.bounds = {"tasks": retention.max_tasks, "workflows": retention.max_runs}
        self.finished_rows = self._recount()
        self.pruned = dict.fromkeys(self.bounds, 0)  # rows deleted since start
        self.passes = 0
        self.slowest_s = 0.0
        self._window = _Window()

    def _recount(self) -> dict[str, int]:
        return {table: self.journal.count(table, finished=True) for table in self.bounds}

    def finished(self, table: str, count: int) -> None:
        """``count`` more rows of ``table`` were stored finished."""
        self.finished_rows[table] += count

    def prune(self) -> Pruned:
        """One pass: delete at most :data:`PRUNE_BATCH` rows per table past the retention."""
        started = time.perf_counter()
        self.passes += 1
        if self.passes % RECOUNT_PASSES == 0:  # what the counting missed (rows set aside)
            self.finished_rows = self._recount()
        age_s = self.retention.max_age_s
        before = None if age_s is None else now_ms() - int(age_s * 1000)
        deleted: dict[str, list[str]] = {}
        for table, bound in self.bounds.items():
            over = 0 if bound is None else self.finished_rows[table] - bound
            if before is None and over <= 0:
                deleted[table] = []
                continue
            with self.journal.transaction():
                ids = self.journal.prune(
                    table, finished_before_ms=before, oldest=over, limit=PRUNE_BATCH
                )
            deleted[table] = ids
            self.pruned[table] += len(ids)
            self.finished_rows[table] = max(0, self.finished_rows[table] - len(ids))
        if deleted["tasks"] or deleted["workflows"]:
            self.journal.release_free_pages()
        seconds = time.perf_counter() - started
        self.slowest_s = max(self.slowest_s, seconds)
        if deleted["tasks"] or deleted["workflows"]:
            self._window.add(len(deleted["tasks"]), len(deleted["workflows"]), seconds)
        return Pruned(deleted["tasks"], deleted["workflows"], seconds)

    def report(self) -> dict[str, Any] | None:
        """What was pruned since the last report, at most every :data:`REPORT_S` seconds
        (``{tasks, runs, passes, mean_ms, slowest_ms, kept}``), or None."""
        window = self._window
        if window.passes == 0 or time.monotonic() - window.started < REPORT_S:
            return None
        self._window = _Window()
        kept = {"tasks": self.finished_rows["tasks"], "runs": self.finished_rows["workflows"]}
        mean_ms = window.seconds * 1000 / window.passes
        return {"tasks": window.tasks, "runs": window.runs, "passes": window.passes,
                "mean_ms": round(mean_ms, 1), "slowest_ms": round(window.slowest_s * 1000, 1),
                "kept": kept}  # fmt: skip


class _Window:
    """What the passes since the last report pruned."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.tasks = self.runs = self.passes = 0
        self.seconds = self.slowest_s = 0.0

    def add(self, tasks: int, runs: int, seconds: float) -> None:
        self.tasks += tasks
        self.runs += runs
        self.passes += 1
        self.seconds += seconds
        self.slowest_s = max(self.slowest_s, seconds)
