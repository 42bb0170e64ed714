"""The macp benchmark suite: ``python -m bench [--quick] [--only W1,W3] [--peers]``.

Every workload runs for macp and, in the same run, for its baselines (bare pyzmq + msgpack
between two processes or a ``queue.Queue`` between two threads, and bare Pykka), so that the
ratios compare figures measured side by side on the same (noisy, shared) machine.

Layout: :mod:`bench.core` (figures, the workload registry, deadlines), :mod:`bench.report`
(JSON lines, ratios, the table), :mod:`bench.procs` (child processes), one module per group
of workloads (:mod:`bench.local`, :mod:`bench.remote`, :mod:`bench.spawn`,
:mod:`bench.scatter`, :mod:`bench.tasks`, :mod:`bench.liveness`), the node set-ups they share
(:mod:`bench.nodes`), the agents they run (:mod:`bench.agents`), the raw pyzmq peer process
(:mod:`bench.peer`), the node-process wrapper (:mod:`bench.nodeproc`) and the optional
third-party systems (:mod:`bench.others`).
"""
