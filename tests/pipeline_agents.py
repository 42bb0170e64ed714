"""The six stages of a data pipeline, run by test agents in node processes (importable as
``pipeline_agents:Stages``): ingestion -> transformation -> analysis -> validation ->
processing -> output, each small real work on a list of numbers.

Each stage's task body is the coordinator's default for a step without one: ``{"input": the
run's input, "deps": {previous stage: its output}}``; a REST pipeline run's input is ``{"data":
..., "parameters": ...}``.
"""

from __future__ import annotations

from typing import Any

import macp
from macp import Agent, Context, handler

STAGES = ("ingestion", "transformation", "analysis", "validation", "processing", "output")


def _previous(body: dict[str, Any], stage: str) -> dict[str, Any]:
    output: dict[str, Any] = body["deps"][stage]
    return output


class Stages(Agent):
    """Runs every stage of the pipeline."""

    capabilities = STAGES

    @handler("ingestion")
    def ingestion(self, body: dict[str, Any], ctx: Context) -> macp.Wire:
        """The raw data (numbers, possibly as text) parsed; blanks dropped."""
        raw = body["input"]["data"]
        records = [int(str(x).strip()) for x in raw if str(x).strip()]
        ctx.progress(1.0, f"{len(records)} records")
        return {"records": records, "dropped": len(raw) - len(records), "by": self.name}

    @handler("transformation")
    def transformation(self, body: dict[str, Any]) -> macp.Wire:
        """Each record scaled by the run's ``factor`` parameter."""
        factor = int(body["input"]["parameters"].get("factor", 1))
        records = _previous(body, "ingestion")["records"]
        return {"values": [r * factor for r in records], "by": self.name}

    @handler("analysis")
    def analysis(self, body: dict[str, Any]) -> macp.Wire:
        """The values' count, sum, min, max and mean."""
        values = _previous(body, "transformation")["values"]
        stats = {"count": len(values), "sum": sum(values), "min": min(values),
                 "max": max(values), "mean": sum(values) / len(values)}  # fmt: skip
        return {"values": values, "stats": stats, "by": self.name}

    @handler("validation")
    def validation(self, body: dict[str, Any]) -> macp.Wire:
        """The statistics checked against the values they describe."""
        previous = _previous(body, "analysis")
        values, stats = previous["values"], previous["stats"]
        if stats["count"] != len(values) or stats["sum"] != sum(values):
            raise macp.InvalidParams("the analysis does not describe its values")
        return {"values": values, "stats": stats, "valid": True, "by": self.name}

    @handler("processing")
    def processing(self, body: dict[str, Any]) -> macp.Wire:
        """The values normalised to 0..1."""
        previous = _previous(body, "validation")
        low, high = previous["stats"]["min"], previous["stats"]["max"]
        span = (high - low) or 1
        normalised = [round((v - low) / span, 4) for v in previous["values"]]
        return {"normalised": normalised, "stats": previous["stats"], "by": self.name}

    @handler("output")
    def output(self, body: dict[str, Any]) -> macp.Wire:
        """The report: the statistics, the normalised values, and a line of text."""
        previous = _previous(body, "processing")
        stats = previous["stats"]
        line = f"{stats['count']} values, sum {stats['sum']}, mean {stats['mean']:g}"
        return {"report": line, "stats": stats, "normalised": previous["normalised"]}
