"""A value the control plane cannot store fails that one call or task, with InvalidParams
naming the part at fault; the actor keeps running and nothing else is lost.

The values reach the coordinator, the memory store and the resource manager past any check a
sender makes: envelopes handed straight to the node's delivery (``Node._post.deliver``, as a
peer that is not macp, or a bug, would send them), and replies an agent delivers the same way.
The head runs with the strict setting off, as it does by default."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

import pytest

import macp
from macp import Agent, Cluster, Context, Envelope, Kind, Settings, handler
from macp._storable import MAX_DEPTH
from macp.actors.coordinator import Coordinator
from macp.actors.registry import Registry
from macp.futures import AskFuture
from macp.store import Journal
from macp.testing import LocalCluster, Probe, ProbedAgent, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node

pytestmark = pytest.mark.integration

HEAD = Settings(strict=False, supervisor_check_interval_s=0.05, ask_timeout_s=5.0)
NATIVE = r"; use only dict \(str keys\)/list/str/bytes/int/float/bool/None, e\.g\. "
WHEN = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value  # ``depth`` lists, one inside the other


# (value, the fault the message names, after the field's name)
BAD = [
    pytest.param({"tags": {1, 2}}, r"\['tags'\]: set is not msgpack-native", id="set"),
    pytest.param({"at": WHEN}, r"\['at'\]: datetime is not msgpack-native", id="datetime"),
    pytest.param({1: "one"}, r"\[1\]: a map key of type int is not allowed", id="int-key"),
    pytest.param(nested(300), r"\[0\].*: nested deeper than 256 maps and lists", id="deep"),
    pytest.param([2**64], r"\[0\]: an int of 65 bits is out of msgpack's 64-bit", id="big-int"),
]


def ask_unchecked(node: Node, actor: str, type_: str, body: Any, timeout_s: float = 5.0) -> Any:
    """Ask ``actor`` on ``node`` with an envelope handed straight to the node's delivery, past
    the payload check of any sender; the reply (or error) it gets."""
    env = Envelope.new(Kind.ASK, type_, f"~probe@{node.name}", f"{actor}@{node.name}", body)
    future = AskFuture(env.dst, type_, timeout_s)
    node._pending.add(env.id, future)
    node._post.deliver(env, actor)
    return future.get()


def tell_unchecked(node: Node, actor: str, type_: str, body: Any) -> None:
    env = Envelope.new(Kind.TELL, type_, f"~probe@{node.name}", f"{actor}@{node.name}", body)
    node._post.deliver(env, actor)


class Sneaky(Agent):
    """Answers its tasks by delivering the reply itself, past its node's payload check."""

    capabilities = ("sneak",)

    @handler("answer")
    def answer(self, body: Any, ctx: Context) -> Any:
        value: Any = {"tags": {"a", "b"}} if body == "set" else {"at": WHEN}
        cast("Node", self.node)._post.deliver(ctx.envelope.reply(value, self.address), "")
        return ctx.defer()  # answered already

    @handler("refuse")
    def refuse(self, _body: Any, ctx: Context) -> Any:
        seen: Any = {1, 2}
        error = macp.InvalidParams("no", data={"seen": seen})
        cast("Node", self.node)._post.deliver(ctx.envelope.error(error, self.address), "")
        return ctx.defer()

    @handler("good")
    def good(self, body: Any) -> Any:
        return {"ok": body}


class Slow(ProbedAgent):
    capabilities = ("slow",)

    @handler("slow")
    def slow(self, body: Any) -> Any:
        self.probe.wait_open(timeout_s=10)
        return body


@pytest.fixture
def head(local_cluster: Callable[..., LocalCluster]) -> tuple[Node, Cluster]:
    local = local_cluster(head={"sneaky": Sneaky}, settings=HEAD, pools={"gpu": 2})
    return local.node("head"), local.cluster


def _still_serves(cluster: Cluster, x: int) -> None:
    assert cluster.submit("good", x).result(timeout_s=5) == {"ok": x}


# -- the coordinator ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "fault"), BAD)
def test_a_task_body_that_cannot_be_stored_fails_its_submit_only(
    head: tuple[Node, Cluster], value: Any, fault: str
) -> None:
    node, cluster = head
    before = cluster.submit("good", 1)
    spec = {"type": "good", "body": value}
    with pytest.raises(
        macp.InvalidParams, match=rf"^task field 'body' cannot be stored: body{fault}"
    ):
        ask_unchecked(node, "coordinator", "coordinator.submit", spec)
    assert before.result(timeout_s=5) == {"ok": 1}
    assert [t["id"] for t in cluster.tasks()] == [before.id]
    _still_serves(cluster, 2)


def test_a_scatter_body_that_cannot_be_stored_fails_its_scatter_only(
    head: tuple[Node, Cluster],
) -> None:
    node, cluster = head
    spec = {"type": "good", "body": {"at": WHEN}, "capabilities": ["sneak"]}
    with pytest.raises(
        macp.InvalidParams,
        match=rf"^task field 'body' cannot be stored: body\['at'\]: datetime is not "
        rf"msgpack-native{NATIVE}",
    ):
        ask_unchecked(node, "coordinator", "coordinator.scatter", spec)
    _still_serves(cluster, 3)


@pytest.mark.parametrize(
    ("kind", "fault"),
    [
        ("set", r"result\['tags'\]: set is not msgpack-native"),
        ("datetime", r"result\['at'\]: datetime is not msgpack-native"),
    ],
)
def test_a_result_that_cannot_be_stored_fails_its_task_without_a_retry(
    head: tuple[Node, Cluster], tmp_path: Path, kind: str, fault: str
) -> None:
    _node, cluster = head
    task = cluster.submit("answer", kind, max_retries=3)
    with pytest.raises(
        macp.InvalidParams,
        match=rf"^the result of task {task.id} \(answer\) from sneaky@head cannot be stored: "
        rf"{fault}{NATIVE}",
    ):
        task.result(timeout_s=5)
    status = task.status()
    assert (status["state"], status["attempts"], status["result"]) == ("failed", 1, None)
    _still_serves(cluster, 4)
    with Journal(tmp_path / "journal.sqlite3") as journal:
        stored = journal.get_task(task.id)
    assert stored is not None
    assert stored["state"] == "failed"


def test_an_error_whose_data_cannot_be_stored_keeps_its_class_and_message(
    head: tuple[Node, Cluster],
) -> None:
    _node, cluster = head
    task = cluster.submit("refuse", max_retries=0)
    with pytest.raises(macp.InvalidParams, match=r"^no$") as raised:
        task.result(timeout_s=5)
    assert raised.value.data == {
        "unstorable": "the error cannot be stored: error['data']['seen']: set is not "
        "msgpack-native; use only dict (str keys)/list/str/bytes/int/float/bool/None, e.g. "
        "sorted(...) as a list"
    }
    _still_serves(cluster, 5)


def test_a_scatter_answer_that_cannot_be_stored_counts_as_that_agents_failure(
    head: tuple[Node, Cluster],
) -> None:
    node, cluster = head
    node.spawn(Sneaky, "honest")
    cluster.wait_for_agents(["honest@head"])
    task = cluster.scatter("answer", "set", agents=["sneaky@head"], aggregation="all")
    with pytest.raises(macp.AgentError, match=r"failed: 1 of 1 agents failed$") as raised:
        task.result(timeout_s=5)
    answers: Any = raised.value.data["answers"]
    [answer] = answers
    assert answer["agent"] == "sneaky@head"
    assert answer["error"]["message"].startswith(
        f"the answer of sneaky@head to scatter {task.id} cannot be stored: answer['tags']: set "
        "is not msgpack-native"
    )
    good = cluster.scatter("good", 7, agents=["sneaky@head", "honest@head"], aggregation="all")
    assert [a["result"] for a in good.result(timeout_s=5)] == [{"ok": 7}, {"ok": 7}]


def test_a_progress_report_that_is_not_a_number_and_a_string_changes_nothing(
    head: tuple[Node, Cluster], probe: Probe
) -> None:
    node, cluster = head
    node.spawn(Slow, "slow", probe=probe)
    cluster.wait_for_agents(["slow@head"])
    task = cluster.submit("slow", 1)
    try:
        wait_until(lambda: task.status()["state"] == "running", 5, "not running")
        report = {"task_id": task.id, "attempt": 1}
        tell_unchecked(node, "coordinator", "task.progress", {**report, "progress": 0.7,
                                                             "message": {1}})  # fmt: skip
        tell_unchecked(node, "coordinator", "task.progress", {**report, "progress": "half"})
        status = task.status()  # after the reports: one mailbox, in order
        assert (status["progress"], status["progress_message"]) == (0.0, "")
        tell_unchecked(node, "coordinator", "task.progress", {**report, "progress": 0.5,
                                                             "message": "half way"})  # fmt: skip
        status = task.status()
        assert (status["progress"], status["progress_message"]) == (0.5, "half way")
    finally:
        probe.open()
    assert task.result(timeout_s=5) == 1


# -- the workflow engine --------------------------------------------------------------------------


def test_a_workflow_definition_that_cannot_be_stored_is_refused(
    head: tuple[Node, Cluster],
) -> None:
    node, cluster = head
    definition = {"name": "w", "steps": [{"id": "a", "type": "good", "body": {"x": {1}}}]}
    with pytest.raises(
        macp.InvalidParams,
        match=r"^the workflow definition cannot be stored: "
        rf"definition\['steps'\]\[0\]\['body'\]\['x'\]: set is not msgpack-native{NATIVE}",
    ):
        ask_unchecked(node, "coordinator", "workflow.define", definition)
    run = {"definition": definition}
    with pytest.raises(macp.InvalidParams, match=r"^the workflow definition cannot be stored"):
        ask_unchecked(node, "coordinator", "workflow.run", run)
    assert cluster.runs() == {"definitions": [], "runs": []}


def test_a_workflow_template_that_cannot_be_filled_in_is_refused_at_definition(
    head: tuple[Node, Cluster],
) -> None:
    _node, cluster = head
    definition = {"name": "w", "steps": [{"id": "a", "type": "good", "body": "${inptu.x}"}]}
    with pytest.raises(
        macp.InvalidParams,
        match=r"^workflow 'w': 'steps\[0\]\.body' template \$\{inptu\.x\} must start with "
        r"'input' or 'deps\.STEP'$",
    ):
        cluster.define(definition)


def test_a_workflow_input_or_limit_that_cannot_be_used_fails_its_run_only(
    head: tuple[Node, Cluster],
) -> None:
    node, cluster = head
    cluster.define({"name": "w", "steps": [{"id": "a", "type": "good", "body": "${input}"}]})
    with pytest.raises(
        macp.InvalidParams,
        match=rf"^workflow.run field 'input' cannot be stored: input\['at'\]: datetime is not "
        rf"msgpack-native{NATIVE}",
    ):
        ask_unchecked(node, "coordinator", "workflow.run", {"workflow": "w", "input": {"at": WHEN}})
    with pytest.raises(
        macp.InvalidParams, match=r"^'max_concurrency' must be an integer >= 1, not '3'$"
    ):
        cluster.run("w", 1, max_concurrency="3")  # type: ignore[arg-type]
    assert cluster.runs()["runs"] == []
    assert cluster.run("w", 8).result(timeout_s=5) == {"a": {"ok": 8}}


def test_a_step_output_that_cannot_be_stored_fails_the_step_and_its_run(
    head: tuple[Node, Cluster],
) -> None:
    _node, cluster = head
    definition = {"name": "w", "steps": [{"id": "a", "type": "answer", "body": "set"}]}
    with pytest.raises(
        macp.MacpError,
        match=r"^workflow 'w' failed at step 'a': the result of task \w+ \(answer\) from "
        r"sneaky@head cannot be stored: result\['tags'\]: set is not msgpack-native",
    ):
        cluster.run(definition).result(timeout_s=5)
    _still_serves(cluster, 9)


# -- the memory store and the resource manager ----------------------------------------------------


@pytest.mark.parametrize(("value", "fault"), BAD)
def test_a_memory_value_that_cannot_be_stored_fails_its_put_only(
    head: tuple[Node, Cluster], value: Any, fault: str
) -> None:
    node, cluster = head
    cluster.memory("put", namespace="ns", key="kept", value=1)
    put = {"namespace": "ns", "key": "bad", "value": value}
    with pytest.raises(
        macp.InvalidParams, match=rf"^memory.put field 'value' cannot be stored: value{fault}"
    ):
        ask_unchecked(node, "memory", "memory.put", put)
    assert cluster.memory("get", namespace="ns", key="bad")["found"] is False
    assert cluster.memory("get", namespace="ns", key="kept")["value"] == 1
    assert cluster.memory("list", namespace="ns") == {"keys": ["kept"]}


def test_a_memory_ttl_too_long_to_store_is_refused(head: tuple[Node, Cluster]) -> None:
    _node, cluster = head
    with pytest.raises(
        macp.InvalidParams,
        match=r"^memory.put needs 'ttl_s' of at most 3155760000 seconds \(100 years\), got 1e\+300",
    ):
        cluster.memory("put", namespace="ns", key="k", value=1, ttl_s=1e300)
    assert cluster.memory("put", namespace="ns", key="k", value=1, ttl_s=60)["ok"] is True


def test_resource_amounts_that_cannot_be_used_fail_their_call_only(
    head: tuple[Node, Cluster],
) -> None:
    node, cluster = head
    with pytest.raises(
        macp.InvalidParams,
        match=r"^resources.allocate needs the pools in 'amounts' named by strings, got 1; ",
    ):
        ask_unchecked(node, "resources", "resources.allocate", {"owner": "o", "amounts": {1: 1}})
    with pytest.raises(
        macp.InvalidParams,
        match=r"^resources.allocate needs 'amounts.gpu' to be a number > 0, got 1000000000",
    ):
        ask_unchecked(
            node, "resources", "resources.allocate", {"owner": "o", "amounts": {"gpu": 10**400}}
        )
    with pytest.raises(
        macp.InvalidParams, match=r"^resources.define_pool 'capacity' must be a number >= 0"
    ):
        ask_unchecked(
            node, "resources", "resources.define_pool", {"pool": "big", "capacity": 10**400}
        )
    # through the API, the sender's own check refuses it first
    with pytest.raises(
        macp.InvalidParams, match=r"^body\['amounts'\]\['gpu'\]: an int of 1329 bits is out of"
    ):
        cluster.resources("allocate", owner="o", amounts={"gpu": 10**400})
    lease = cluster.resources("allocate", owner="o", amounts={"gpu": 1})
    assert lease["amounts"] == {"gpu": 1.0}


# -- a bug: a value that got past every check -----------------------------------------------------


class Buggy(Coordinator):
    """A coordinator with a bug: ``test.plant`` puts a set into a task's body."""

    @handler("test.plant")
    def plant(self, body: Any) -> None:
        task = self.table.get(body["task_id"])
        assert task is not None
        task.body = {"tags": {1, 2}}
        self.table.save(task)


def test_a_record_the_journal_refuses_fails_its_task_and_the_coordinator_goes_on(
    make_node: Callable[..., Node], tmp_path: Path
) -> None:
    node = make_node("head", settings=HEAD)
    node.set_head(node.name)
    node.spawn(Registry, "registry")
    node.spawn(Buggy, "coordinator", config={"journal": str(tmp_path / "journal.sqlite3")})
    cluster = Cluster(node)
    task = cluster.submit("nobody-handles-this", 1)  # waits: no agent
    node.ask("coordinator", "test.plant", {"task_id": task.id}).get()
    with pytest.raises(
        macp.InvalidParams,
        match=rf"^the task record cannot be stored: record\['body'\]\['tags'\]: set is not "
        rf"msgpack-native{NATIVE}",
    ):
        task.result(timeout_s=5)
    assert task.status()["state"] == "failed"
    with Journal(tmp_path / "journal.sqlite3") as journal:
        stored = journal.get_task(task.id)
    assert stored is not None
    assert (stored["state"], stored["body"]) == ("failed", {"tags": None})  # the rest is kept
    node.spawn(Sneaky, "sneaky")
    cluster.wait_for_agents(["sneaky@head"])
    _still_serves(cluster, 10)


class Deep(Agent):
    """Answers a value nested as deep as the control plane stores."""

    capabilities = ("deep",)

    @handler("deep")
    def deep(self, _body: Any) -> Any:
        return nested(MAX_DEPTH)


def test_values_nested_as_deep_as_allowed_go_through_votes_and_templates(
    head: tuple[Node, Cluster],
) -> None:
    node, cluster = head
    for name in ("deep-1", "deep-2"):
        node.spawn(Deep, name)
    cluster.wait_for_agents(["deep-1@head", "deep-2@head"])
    vote = cluster.scatter("deep", capabilities=["deep"], aggregation="majority")
    assert vote.result(timeout_s=5) == nested(MAX_DEPTH)  # equal answers, compared recursively
    template: Any = "${input}"
    answer: Any = 5
    for _ in range(MAX_DEPTH - 5):  # the definition holds the body four levels down
        template, answer = [template], [answer]
    definition = {"name": "deep", "steps": [{"id": "a", "type": "good", "body": template}]}
    assert cluster.run(definition, 5).result(timeout_s=5) == {"a": {"ok": answer}}
