"""Third-party actor systems for ``--peers``: Ray and Thespian, when they are importable.

Neither is a dependency of macp, and the suite never installs them: a system that is not
importable is skipped with a note. They run the local workloads only (W1 tells, W2 asks; Ray
also W5's local scatter-gather, as remote tasks), with smaller counts (their per-message cost
is far higher), stated in the figure's variant. Ray actors and Thespian's
``multiprocQueueBase`` actors live in other processes, so these figures include a process
hop that macp's local figures do not: read them as context.
"""

from __future__ import annotations

import importlib.util
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from bench.core import BenchError, Run, latency_metrics, payload

if TYPE_CHECKING:
    from bench.core import Ctx

__all__ = ["ask_runs", "scatter_runs", "tell_runs"]

_MAX_TELLS = 20_000
_MAX_ASKS = 2_000
_MAX_SCATTER_ROUNDS = 20
_TIMEOUT_S = 60.0


def _available(ctx: Ctx, module: str) -> bool:
    if importlib.util.find_spec(module) is not None:
        return True
    ctx.note(f"{module} is not installed; skipped (it is optional: pip install {module})")
    return False


# -- Ray ----------------------------------------------------------------------------------------


def _ray_actor(ctx: Ctx) -> tuple[Any, Any]:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ctx.on_exit(ray.shutdown)

    @ray.remote
    class Counter:
        def __init__(self) -> None:
            self.count = 0

        def item(self, _body: Any) -> None:
            self.count += 1

        def drain(self) -> int:
            count, self.count = self.count, 0
            return count

        def echo(self, body: Any) -> Any:
            return body

    return ray, Counter.remote()  # type: ignore[attr-defined]


def _ray_tell(ray: Any, actor: Any, n: int) -> dict[str, float]:
    start = time.perf_counter()
    for i in range(n):
        actor.item.remote(payload(i))
    arrived = ray.get(actor.drain.remote(), timeout=_TIMEOUT_S)  # ordered after the items
    elapsed = time.perf_counter() - start
    if arrived != n:
        raise BenchError(f"the ray actor counted {arrived} of {n} calls")
    return {"msgs_per_s": n / elapsed}


def _ray_ask(ray: Any, actor: Any, n: int) -> dict[str, float]:
    clock, latencies = time.perf_counter_ns, []
    for i in range(n):
        t0 = clock()
        ray.get(actor.echo.remote(payload(i)), timeout=_TIMEOUT_S)
        latencies.append(clock() - t0)
    return latency_metrics(latencies)


def _ray_scatter(ray: Any, echo: Any, rounds: int, fanout: int) -> dict[str, float]:
    start = time.perf_counter()
    for r in range(rounds):
        base = r * fanout
        answers = ray.get(
            [echo.remote(payload(base + i)) for i in range(fanout)], timeout=_TIMEOUT_S
        )
        if len(answers) != fanout:
            raise BenchError(f"ray answered {len(answers)} of {fanout} tasks")
    return {"tasks_per_s": fanout * rounds / (time.perf_counter() - start)}


def _ray_echo_task(ctx: Ctx) -> tuple[Any, Any]:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ctx.on_exit(ray.shutdown)

    @ray.remote  # type: ignore[untyped-decorator]
    def echo(body: Any) -> Any:
        return body

    return ray, echo


# -- Thespian -----------------------------------------------------------------------------------


def _thespian_actor(ctx: Ctx) -> tuple[Any, Any]:
    from thespian.actors import ActorSystem

    from bench import _thespian

    system = ActorSystem("multiprocQueueBase")
    ctx.on_exit(system.shutdown)
    return system, system.createActor(_thespian.Counter)


def _thespian_tell(system: Any, actor: Any, n: int) -> dict[str, float]:
    start = time.perf_counter()
    for i in range(n):
        system.tell(actor, payload(i))
    arrived = system.ask(actor, "drain", _TIMEOUT_S)
    elapsed = time.perf_counter() - start
    if arrived != n:
        raise BenchError(f"the thespian actor counted {arrived!r} of {n} messages")
    return {"msgs_per_s": n / elapsed}


def _thespian_ask(system: Any, actor: Any, n: int) -> dict[str, float]:
    clock, latencies = time.perf_counter_ns, []
    for i in range(n):
        t0 = clock()
        if system.ask(actor, ["echo", payload(i)], _TIMEOUT_S) is None:
            raise BenchError("the thespian actor did not answer in time")
        latencies.append(clock() - t0)
    return latency_metrics(latencies)


# -- what the workloads call --------------------------------------------------------------------


def tell_runs(ctx: Ctx, n: int) -> list[Run]:
    """The ``--peers`` runs of a tell-throughput workload (none without ``--peers``)."""
    if not ctx.peers:
        return []
    count = min(n, _MAX_TELLS)
    runs: list[Run] = []
    if _available(ctx, "ray"):
        ray, actor = _ray_actor(ctx)
        fn = partial(_ray_tell, ray, actor, count)
        runs.append(Run("ray", fn, variant=f"n={count}", warmup=fn))
    if _available(ctx, "thespian"):
        system, actor = _thespian_actor(ctx)
        fn = partial(_thespian_tell, system, actor, count)
        runs.append(Run("thespian", fn, variant=f"n={count}", warmup=fn))
    return runs


def ask_runs(ctx: Ctx, n: int) -> list[Run]:
    """The ``--peers`` runs of an ask-latency workload (none without ``--peers``)."""
    if not ctx.peers:
        return []
    count = min(n, _MAX_ASKS)
    runs: list[Run] = []
    if _available(ctx, "ray"):
        ray, actor = _ray_actor(ctx)
        fn = partial(_ray_ask, ray, actor, count)
        runs.append(Run("ray", fn, variant=f"n={count}", warmup=fn))
    if _available(ctx, "thespian"):
        system, actor = _thespian_actor(ctx)
        fn = partial(_thespian_ask, system, actor, count)
        runs.append(Run("thespian", fn, variant=f"n={count}", warmup=fn))
    return runs


def scatter_runs(ctx: Ctx, rounds: int, fanout: int, group: str) -> list[Run]:
    """The ``--peers`` runs of the scatter-gather workload: Ray remote tasks, ``fanout`` per
    round, then ``ray.get`` of them all (none without ``--peers``)."""
    if not ctx.peers:
        return []
    count = min(rounds, _MAX_SCATTER_ROUNDS)
    runs: list[Run] = []
    if _available(ctx, "ray"):
        ray, echo = _ray_echo_task(ctx)
        fn = partial(_ray_scatter, ray, echo, count, fanout)
        runs.append(
            Run("ray", fn, variant=f"{group}, remote tasks, rounds={count}", group=group, warmup=fn)
        )
    ctx.note("Thespian has no scatter variant; only Ray is tried for W5")
    return runs
