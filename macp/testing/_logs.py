"""Log capture for tests: macp's structlog events as dicts, through structlog's own helper."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog

from macp.testing._waits import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["LogEvents", "capture_logs"]

LogRecord = dict[str, Any]


class LogEvents(list[LogRecord]):
    """Log events as dicts (``event``, ``log_level`` and the fields), oldest first, with ways
    to find them by name and fields: what :func:`capture_logs` captures (the list grows while
    it is active), or a node process's JSON lines (:meth:`NodeProcess.logs`).
    """

    @classmethod
    def from_json_lines(cls, lines: Iterable[str]) -> LogEvents:
        """The records among ``lines`` that are JSON objects (a program's ``--log-json``
        output); other lines (a traceback, a warning) are left out."""
        records = cls()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def names(self) -> list[str]:
        """The event names, in order."""
        return [str(record.get("event")) for record in list(self)]

    def find(self, event: str | None = None, **fields: Any) -> list[LogRecord]:
        """The records of ``event`` (any event if ``None``) whose ``fields`` have these values."""
        return [
            record
            for record in list(self)  # a snapshot: other threads may log meanwhile
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
    """Capture every structlog event (macp's included) while the block runs, with a
    :class:`structlog.testing.LogCapture` in place of the configured processors (as
    :func:`structlog.testing.capture_logs` does): nothing is rendered or written meanwhile,
    and the processors are back afterwards. Each record has ``event``, ``log_level`` and the
    event's fields (``node``, ``actor``, ...). Not for two captures at once (structlog's
    configuration is global); loggers of a program that configured structlog with a level
    filter still drop the levels below it.

    Example::

        with capture_logs() as logs:
            node = Node("n1").start()
        assert logs.one("node.started", node="n1")
    """
    events = LogEvents()
    capture = structlog.testing.LogCapture()
    capture.entries = events  # type: ignore[assignment] # a list of event dicts, as LogCapture's
    # The configured list itself changes (bound loggers hold it), and is restored afterwards.
    processors = structlog.get_config()["processors"]
    if not isinstance(processors, list):  # configured with a tuple: make it a list to change
        structlog.configure(processors=list(processors))
        processors = structlog.get_config()["processors"]
    before = list(processors)
    processors[:] = [capture]
    try:
        yield events
    finally:
        processors[:] = before
