"""A data pipeline as an assembly line: ingest -> parse -> transform -> validate -> aggregate
-> output over a CSV of sales. ``ingest`` turns the input into items (one per CSV line), the
middle stages handle each item (pipelined: many items are in flight at once, in different
stages), ``aggregate`` and ``output`` see all the items together."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from pathlib import Path
from typing import Any

from macp import Agent, handler

FIELDS = ("order_id", "region", "product", "quantity", "unit_price", "date")


def fingerprint(order_id: str, rounds: int) -> str:
    """A deliberately slow step: the transform stage is the one that needs replicas."""
    digest = order_id.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


class Ingest(Agent):
    @handler("ingest")
    def ingest(self, body: dict[str, Any]) -> list[str]:
        lines = Path(body["csv"]).read_text(encoding="utf-8").splitlines()
        return [line for line in lines[1:] if line.strip()]  # no header, no blank lines


class Parse(Agent):
    @handler("parse")
    def parse(self, line: str) -> dict[str, Any]:
        row = next(csv.reader(io.StringIO(line)))
        if len(row) != len(FIELDS):
            return {"raw": line, "errors": [f"expected {len(FIELDS)} fields, got {len(row)}"]}
        return {**dict(zip(FIELDS, row, strict=True)), "errors": []}


class Transform(Agent):
    @handler("transform")
    def transform(self, record: dict[str, Any]) -> dict[str, Any]:
        if record["errors"]:
            return record
        out = dict(record)
        out["region"] = record["region"].strip().lower()
        try:
            out["quantity"] = int(record["quantity"])
            out["unit_price"] = float(record["unit_price"])
            out["revenue"] = round(out["quantity"] * out["unit_price"], 2)
        except ValueError as e:
            out["errors"] = [f"not a number: {e}"]
        out["fingerprint"] = fingerprint(record["order_id"], int(self.config.get("rounds", 2000)))
        return out


class Validate(Agent):
    @handler("validate")
    def validate(self, record: dict[str, Any]) -> dict[str, Any]:
        errors = list(record["errors"])
        if not errors:
            if record["quantity"] <= 0:
                errors.append("quantity must be positive")
            try:
                dt.date.fromisoformat(record["date"])
            except ValueError:
                errors.append(f"bad date {record['date']!r}")
        return {**record, "errors": errors, "valid": not errors}


class Aggregate(Agent):
    @handler("aggregate")
    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        by_region: dict[str, float] = {}
        by_product: dict[str, int] = {}
        for r in records:
            if r["valid"]:
                by_region[r["region"]] = round(by_region.get(r["region"], 0.0) + r["revenue"], 2)
                by_product[r["product"]] = by_product.get(r["product"], 0) + r["quantity"]
        invalid = [r.get("order_id") or r.get("raw") for r in records if not r["valid"]]
        return {
            "rows": len(records),
            "valid": len(records) - len(invalid),
            "invalid": sorted(invalid),
            "revenue_by_region": dict(sorted(by_region.items())),
            "units_by_product": dict(sorted(by_product.items())),
        }


class Output(Agent):
    @handler("output")
    def output(self, summary: dict[str, Any]) -> dict[str, Any]:
        total = round(sum(summary["revenue_by_region"].values()), 2)
        return {**summary, "total_revenue": total}
