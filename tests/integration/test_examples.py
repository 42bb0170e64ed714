"""Every example end to end, through `macp up` and as separate `macp node start` processes; each
result is checked against one computed here, independently of the example's code."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import json
import math
import re
import signal
import statistics
import subprocess
import sys
import threading
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import pytest
from topology_procs import (
    ROOT,
    TopologyNodes,
    expected_analysis,
    macp_cli,
    node_processes,
    prime_factors,
    unlogged,
)

from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration


# -- results computed here ------------------------------------------------------------------------


def expected_wordcount(corpus: Path, top: int, chunk_lines: int) -> dict[str, Any]:
    counts: collections.Counter[str] = collections.Counter()
    files = sorted(corpus.glob("*.txt"))
    chunks = 0
    for file in files:
        text = file.read_text(encoding="utf-8")
        chunks += math.ceil(len(text.splitlines()) / chunk_lines)
        counts.update(w for w in (t.strip("'") for t in re.findall(r"[a-z']+", text.lower())) if w)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "files": len(files),
        "chunks": chunks,
        "total_words": sum(counts.values()),
        "distinct_words": len(counts),
        "top": [[word, n] for word, n in ranked[:top]],
    }


def expected_sales(path: Path) -> dict[str, Any]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row][1:]
    revenue: dict[str, Decimal] = collections.defaultdict(Decimal)
    units: dict[str, int] = collections.defaultdict(int)
    invalid = []
    for row in rows:
        if len(row) != 6:  # order_id, region, product, quantity, unit_price, date
            invalid.append(",".join(row))
            continue
        order_id, region, product, quantity, price, date = row
        try:
            amount = int(quantity) * Decimal(price)
            dt.date.fromisoformat(date)
        except (ValueError, InvalidOperation):
            invalid.append(order_id)
            continue
        if int(quantity) <= 0:
            invalid.append(order_id)
            continue
        revenue[region.strip().lower()] += amount
        units[product] += int(quantity)
    return {
        "rows": len(rows),
        "valid": len(rows) - len(invalid),
        "invalid": sorted(invalid),
        "revenue_by_region": {r: float(v) for r, v in sorted(revenue.items())},
        "units_by_product": dict(sorted(units.items())),
        "total_revenue": float(sum(revenue.values())),
    }


def primes_between(start: int, stop: int) -> int:
    sieve = [True] * stop
    for i in range(2, stop):
        if sieve[i] and i * i < stop:
            sieve[i * i :: i] = [False] * len(range(i * i, stop, i))
    return sum(1 for n in range(max(start, 2), stop) if sieve[n])


def expected_primes(start: int, stop: int) -> dict[str, Any]:
    """The director splits the range in two halves, one per lead; each lead has two workers
    and gives each two parts."""
    middle = start + math.ceil((stop - start) / 2)
    teams = [
        {"lead": lead, "parts": 4, "primes": primes_between(a, b), "start": a, "stop": b}
        for lead, a, b in [("lead-a@team-a", start, middle), ("lead-b@team-b", middle, stop)]
    ]
    return {"primes": primes_between(start, stop), "start": start, "stop": stop, "teams": teams}


def test_the_expected_results_are_right_on_small_cases() -> None:
    assert [prime_factors(n) for n in (1, 2, 12, 97, 360)] == [
        [],
        [2],
        [2, 2, 3],
        [97],
        [2, 2, 2, 3, 3, 5],
    ]
    assert [primes_between(0, 30), primes_between(10, 30), primes_between(0, 2)] == [10, 6, 0]


# -- processes ------------------------------------------------------------------------------------


def up(example: str, task: Any, env: dict[str, str]) -> Any:
    """`macp up` the example with ``task``: its result, once it exited 0 leaving no node behind."""
    done = macp_cli("up", f"examples/{example}/topology.yaml", "--task", json.dumps(task), env=env)
    assert (done.returncode, unlogged(done.stderr)) == (0, []), done.stderr
    assert node_processes(env["MACP_DATA_DIR"]) == []
    return json.loads(done.stdout)


@pytest.fixture
def topology(env: dict[str, str]) -> Iterator[Callable[[str, list[str], set[str]], TopologyNodes]]:
    """Start an example's nodes as processes: ``topology(example, nodes, agents)``."""
    started: list[TopologyNodes] = []

    def start(example: str, nodes: list[str], agents: set[str]) -> TopologyNodes:
        started.append(TopologyNodes(f"examples/{example}/topology.yaml", nodes, env))
        return started[-1].start(agents)

    yield start
    for nodes in started:
        nodes.kill()


def run(nodes: TopologyNodes, *args: str) -> Any:
    """`macp run` on a running topology: its result, once it exited 0."""
    done = macp_cli("run", nodes.file, *args, "--connect", nodes.head, env=nodes.env)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return json.loads(done.stdout)


WORDCOUNT_AGENTS = {"splitter@head", "counter-1@worker", "counter-2@head", "counter-3@worker"}
HIERARCHY_AGENTS = {
    "director@hq", "lead-a@team-a", "lead-b@team-b", "worker-a-1@team-a", "worker-a-2@team-a",
    "worker-b-1@team-b", "worker-b-2@team-b",
}  # fmt: skip
PEERS_AGENTS = {"analyst@alpha", "factorer-1@beta", "factorer-2@beta", "statistician@beta"}


# -- macp up --------------------------------------------------------------------------------------


def test_up_wordcount_counts_every_word_of_the_corpus(env: dict[str, str]) -> None:
    result = up("wordcount", {"corpus": "examples/wordcount/corpus", "top": 7}, env)
    assert result == expected_wordcount(ROOT / "examples/wordcount/corpus", top=7, chunk_lines=12)


def test_up_pipeline_aggregates_the_valid_rows_of_the_csv(env: dict[str, str]) -> None:
    result = up("pipeline", {"csv": "examples/pipeline/sales.csv"}, env)
    assert result == expected_sales(ROOT / "examples/pipeline/sales.csv")


def test_up_peers_factors_the_numbers_and_summarizes_them(env: dict[str, str]) -> None:
    numbers = [84, 97, 360, 1001, 65537]
    assert up("peers", {"numbers": numbers}, env) == expected_analysis(numbers)


def test_up_hierarchy_counts_the_primes_below_the_bound(env: dict[str, str]) -> None:
    result = up("hierarchy", {"start": 0, "stop": 300000}, env)
    assert result == expected_primes(0, 300000)


def test_up_without_a_task_serves_until_sigterm_then_stops_every_node(env: dict[str, str]) -> None:
    file = "examples/wordcount/topology.yaml"
    err: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "macp", "up", file],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        reader = threading.Thread(target=lambda: err.extend(proc.stderr or []), daemon=True)
        reader.start()
        try:
            wait_until(lambda: err, 60, "macp up did not say it is up")
            up_line = (
                r"wordcount is up: 2 nodes, head at (tcp://127\.0\.0\.1:\d+); Ctrl-C stops it\n"
            )
            found = re.fullmatch(up_line, err[0])
            assert found, err
            assert len(node_processes(env["MACP_DATA_DIR"])) == 2
            task = json.dumps({"corpus": "examples/wordcount/corpus"})
            done = macp_cli("run", file, "--task", task, "--connect", found[1], env=env)
            assert (done.returncode, done.stderr) == (0, "")
            corpus = ROOT / "examples/wordcount/corpus"
            assert json.loads(done.stdout) == expected_wordcount(corpus, top=10, chunk_lines=12)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(10)
        assert (proc.stdout.read() if proc.stdout else None, unlogged(err[1:])) == ("", [])
    assert node_processes(env["MACP_DATA_DIR"]) == []


# -- separate node processes ----------------------------------------------------------------------


def test_wordcount_on_separate_node_processes_gives_the_same_counts(
    topology: Callable[[str, list[str], set[str]], TopologyNodes],
) -> None:
    nodes = topology("wordcount", ["head", "worker"], WORDCOUNT_AGENTS)
    result = run(nodes, "--task", json.dumps({"corpus": "examples/wordcount/corpus", "top": 3}))
    assert result == expected_wordcount(ROOT / "examples/wordcount/corpus", top=3, chunk_lines=12)
    assert nodes.terminate() == {"head": 0, "worker": 0}


def test_hierarchy_on_three_node_processes_gives_the_same_counts(
    topology: Callable[[str, list[str], set[str]], TopologyNodes],
) -> None:
    nodes = topology("hierarchy", ["hq", "team-a", "team-b"], HIERARCHY_AGENTS)
    result = run(nodes, "--task", json.dumps({"start": 1000, "stop": 123457}))
    assert result == expected_primes(1000, 123457)
    assert nodes.terminate() == {"hq": 0, "team-a": 0, "team-b": 0}


def test_the_peers_summary_workflow_combines_statistics_and_factors(
    topology: Callable[[str, list[str], set[str]], TopologyNodes],
) -> None:
    nodes = topology("peers", ["alpha", "beta"], PEERS_AGENTS)
    numbers, n = [4, 9, 20], 360
    result = run(
        nodes, "--workflow", "summary", "--input", json.dumps({"numbers": numbers, "n": n})
    )
    assert result == {
        "combine": {"largest_factor": max(prime_factors(n)), "mean": statistics.mean(numbers)}
    }
    assert run(nodes, "--task", json.dumps({"numbers": numbers})) == expected_analysis(numbers)
    assert nodes.terminate() == {"alpha": 0, "beta": 0}
