"""Log capture for tests: macp's structlog events as dicts, through structlog's own helper."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast, overload

import structlog

from macp.testing._waits import wait_until

__all__ = ["LogEvents", "capture_logs"]

LogRecord = dict[str, Any]


class LogEvents(Sequence[LogRecord]):
    """Log events as dicts (``event``, ``log_level`` and the fields), oldest first, with ways
    to find them by name and fields. A view of a list that may still grow: what
    :func:`capture_logs` captures, or a node process's JSON lines (:meth:`NodeProcess.logs`).
    """

    def __init__(self, records: list[LogRecord] | None = None) -> None:
        self._records = records if records is not None else []

    @classmethod
    def from_json_lines(cls, lines: Iterable[str]) -> LogEvents:
        """The records among ``lines`` that are JSON objects (a program's ``--log-json``
        output); other lines (a traceback, a warning) are left out."""
        records: list[LogRecord] = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return cls(records)

    @overload
    def __getitem__(self, index: int) -> LogRecord: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[LogRecord]: ...
    def __getitem__(self, index: int | slice) -> LogRecord | Sequence[LogRecord]:
        return self._records[index]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[LogRecord]:
        return iter(list(self._records))  # a snapshot: other threads may log meanwhile

    def __repr__(self) -> str:
        return f"LogEvents({list(self._records)!r})"

    def names(self) -> list[str]:
        """The event names, in order."""
        return [str(record.get("event")) for record in self]

    def find(self, event: str | None = None, **fields: Any) -> list[LogRecord]:
        """The records of ``event`` (any event if ``None``) whose ``fields`` have these values."""
        return [
            record
            for record in self
            if (event is None or record.get("event") == event)
            and all(k in record and record[k] == v for k, v in fields.items())
        ]

    def one(self, event: str | None = None, **fields: Any) -> LogRecord:
        """The one record of ``event`` with ``fields``.

        Raises:
            AssertionError: there is none, or more than one (the message lists what there is).
        """
        found = self.find(event, **fields)
        if len(found) != 1:
            raise AssertionError(
                f"{len(found)} log events {event!r} with {fields}, not 1; "
                f"logged: {self.names()!r:.1000}"
            )
        return found[0]

    def wait_for(self, event: str, timeout_s: float = 5.0, **fields: Any) -> LogRecord:
        """Wait until ``event`` with ``fields`` is logged (by any thread); the first such record.

        Raises:
            AskTimeout: it was not logged within ``timeout_s``.
        """
        wait_until(
            lambda: self.find(event, **fields),
            timeout_s,
            f"no log event {event!r} with {fields} within {timeout_s:g} s; "
            f"logged: {self.names()!r:.1000}",
        )
        return self.find(event, **fields)[0]


@contextmanager
def capture_logs() -> Iterator[LogEvents]:
    """Capture every structlog event (macp's included) while the block runs, with
    :func:`structlog.testing.capture_logs`: nothing is rendered or written meanwhile, and the
    configured processors are back afterwards. Each record has ``event``, ``log_level`` and
    the event's fields (``node``, ``actor``, ...). Loggers made by a program that configured
    structlog with a level filter still drop the levels below it.

    Example::

        with capture_logs() as logs:
            node = Node("n1").start()
        assert logs.one("node.started", node="n1")
    """
    with structlog.testing.capture_logs() as entries:
        yield LogEvents(cast("list[LogRecord]", entries))  # structlog's event dicts are dicts
