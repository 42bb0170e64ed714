"""Peers with different skills help each other: the analyst cannot factor numbers nor compute
statistics itself, so it asks for help (``request_assistance``): each request is a task of the
coordinator for the least loaded other peer that can."""

from __future__ import annotations

import math
import statistics
from typing import Any

from macp import Peer, handler


def factorize(n: int) -> list[int]:
    """Prime factors of ``n`` (with repeats), by trial division."""
    factors, d = [], 2
    while d * d <= n:
        while n % d == 0:
            factors.append(d)
            n //= d
        d += 1
    if n > 1:
        factors.append(n)
    return factors


class Analyst(Peer):
    """Analyzes a list of numbers with help from the other peers."""

    capabilities = ("analysis",)

    @handler("analyze")
    def analyze(self, body: dict[str, Any]) -> dict[str, Any]:
        numbers = [int(n) for n in body["numbers"]]
        factors = {str(n): self.request_assistance(["factoring"], {"n": n}) for n in numbers}
        stats = self.request_assistance(["statistics"], {"values": numbers})
        primes = sorted(n for n in numbers if factors[str(n)] == [n])
        return {"factors": factors, "stats": stats, "primes": primes,
                "gcd": math.gcd(*numbers)}  # fmt: skip

    @handler("combine")
    def combine(self, body: dict[str, Any]) -> dict[str, Any]:
        deps = body["deps"]
        return {"largest_factor": max(deps["factor"]), "mean": deps["stats"]["mean"]}


class Factorer(Peer):
    capabilities = ("factoring",)

    @handler("factoring")
    def factor(self, body: dict[str, int]) -> list[int]:
        return factorize(int(body["n"]))


class Statistician(Peer):
    capabilities = ("statistics",)

    @handler("statistics")
    def stats(self, body: dict[str, list[float]]) -> dict[str, float]:
        values = body["values"]
        return {
            "mean": statistics.fmean(values),
            "median": float(statistics.median(values)),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
