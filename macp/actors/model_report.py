"""What a handler reports about the model its agent runs on: ``ctx.report(...)``'s figures.

An agent that declares ``model_type`` (and ``model_version``) reports, from a handler, the
figures of one call of its model: ``inference_ms`` (a number >= 0), ``tokens_in`` and
``tokens_out`` (whole numbers >= 0) and ``error`` (``True``, or the error's text; ``False``
or ``None``: none). The report goes to the monitor on the head (a ``monitor.model_report``
tell: at-most-once), which counts it for the model (``type@version``) and the agent.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from macp.errors import InvalidParams

if TYPE_CHECKING:
    from macp.envelope import Wire

__all__ = ["FIGURES", "MODEL_REPORT", "model_key", "report_body"]

MODEL_REPORT: Final = "monitor.model_report"
FIGURES: Final = ("inference_ms", "tokens_in", "tokens_out", "error")


def model_key(model_type: str, model_version: str | None) -> str:
    """The name figures are counted under: ``type@version``, or ``type`` without a version."""
    return f"{model_type}@{model_version}" if model_version else model_type


def _number(name: str, value: object, *, whole: bool) -> float | int:
    kind = "a whole number" if whole else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if whole else int | float)
    if not ok or not math.isfinite(value) or value < 0:  # type: ignore[arg-type,operator]
        raise InvalidParams(f"ctx.report's {name} must be {kind} >= 0, not {value!r:.40}")
    return value  # type: ignore[return-value]


def report_body(
    agent: str, model_type: str | None, model_version: str | None, figures: dict[str, object]
) -> dict[str, Wire]:
    """The ``monitor.model_report`` body for ``figures`` reported by ``agent``.

    Raises:
        InvalidParams: the agent declares no model, a figure's name is unknown, its value of
            the wrong type, or no figure is given (one sentence, naming it).
    """
    if not model_type:
        raise InvalidParams(
            f"ctx.report needs the agent's model: {agent} declares no model_type; set "
            "model_type (and model_version) on its class or its topology entry"
        )
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        raise InvalidParams(f"ctx.report has no figure {unknown[0]!r}; report {', '.join(FIGURES)}")
    if not figures:
        raise InvalidParams(f"ctx.report needs at least one figure: {', '.join(FIGURES)}")
    body: dict[str, Wire] = {"agent": agent, "model": model_key(model_type, model_version)}
    if "inference_ms" in figures:
        body["inference_ms"] = float(_number("inference_ms", figures["inference_ms"], whole=False))
    for name in ("tokens_in", "tokens_out"):
        if name in figures:
            body[name] = _number(name, figures[name], whole=True)
    error = figures.get("error")
    if error is not None and not isinstance(error, bool | str):
        raise InvalidParams(
            f"ctx.report's error must be true/false or the error's text, not {error!r:.40}"
        )
    body["error"] = bool(error)
    if isinstance(error, str) and error:
        body["error_message"] = error[:500]
    return body
