"""A director, team leads and workers: counting the primes below a bound. The director splits
the range among the leads, each lead among its workers; the counts are added back up."""

from __future__ import annotations

import math
from typing import Any

from macp import Agent, Hub, handler


def split(start: int, stop: int, parts: int) -> list[dict[str, int]]:
    step = math.ceil((stop - start) / parts)
    return [{"start": s, "stop": min(s + step, stop)} for s in range(start, stop, step)]


def count_primes(start: int, stop: int) -> int:
    """Primes in ``[start, stop)`` by a segmented sieve."""
    if stop <= 2:  # noqa: PLR2004
        return 0
    limit = math.isqrt(stop - 1)
    base = [True] * (limit + 1)
    small = []
    for i in range(2, limit + 1):
        if base[i]:
            small.append(i)
            base[i * i :: i] = [False] * len(base[i * i :: i])
    low = max(start, 2)
    segment = [True] * (stop - low)
    for p in small:
        first = max(p * p, (low + p - 1) // p * p)
        segment[first - low :: p] = [False] * len(segment[first - low :: p])
    return sum(segment)


class Director(Hub):
    def decompose(self, body: Any) -> list[Any]:
        return split(int(body["start"]), int(body["stop"]), len(self.config["children"]))

    def merge(self, results: list[Any], body: Any) -> Any:
        return {"primes": sum(r["primes"] for r in results), "start": body["start"],
                "stop": body["stop"], "teams": results}  # fmt: skip


class TeamLead(Hub):
    def decompose(self, body: Any) -> list[Any]:
        return split(int(body["start"]), int(body["stop"]), 2 * len(self.config["children"]))

    def merge(self, results: list[Any], body: Any) -> Any:
        return {"lead": self.address, "primes": sum(results), "parts": len(results),
                "start": body["start"], "stop": body["stop"]}  # fmt: skip


class PrimeCounter(Agent):
    @handler("count_primes")
    def count(self, body: dict[str, int]) -> int:
        return count_primes(int(body["start"]), int(body["stop"]))
