"""A first macp program: a supervised node, a few agents, some work, one crash.

Run it with ``make run`` (or ``python -m examples.quickstart`` inside the virtualenv).
"""

from __future__ import annotations

import collections
import re

import macp
from macp import Agent, ChildSpec, Context, Node, Restart, Strategy, SupervisorSpec, handler
from macp.log import configure_logging

TEXT = """
Actors exchange messages. A supervisor restarts an actor that crashes, so one bad message
does not take the system down. Messages between actors are envelopes; envelopes cross
processes and hosts unchanged.
"""


class WordCounter(Agent):
    """Counts words in the text it is given."""

    capabilities = ("count",)

    @handler("count")
    def count(self, body: dict[str, str]) -> dict[str, int]:
        words = re.findall(r"[a-z']+", body["text"].lower())
        return dict(collections.Counter(words).most_common(5))


class Summarizer(Agent):
    """Summarizes text by asking a counter for its top words (an ask from inside an agent)."""

    capabilities = ("summarize",)

    @handler("summarize")
    def summarize(self, body: dict[str, str], ctx: Context) -> dict[str, macp.Wire]:
        top = self.ask("counter-1", "count", {"text": body["text"]}).get()
        sentences = [s.strip() for s in body["text"].split(".") if s.strip()]
        return {"first_sentence": sentences[0], "top_words": list(top), "asked_by": ctx.sender}


class Fragile(Agent):
    """Crashes on bad input; its supervisor restarts it with fresh state."""

    crash_on_error = True

    def on_start(self) -> None:
        self.handled = 0

    @handler("parse")
    def parse(self, body: str) -> int:
        self.handled += 1
        return int(body)  # "oops" raises ValueError, which crashes this agent


def main() -> None:
    configure_logging(level="warning")  # a program configures logging; the library never does
    workers = SupervisorSpec(
        "workers",
        [
            ChildSpec(WordCounter, "counter-1"),
            ChildSpec(Summarizer, "summarizer"),
            ChildSpec(Fragile, "fragile", restart=Restart.PERMANENT),
        ],
        strategy=Strategy.ONE_FOR_ONE,
        max_restarts=3,
        within_s=5,
    )
    with Node("quickstart") as node:
        node.start_child(workers)
        print("agents:", ", ".join(sorted(node.agents())))

        print("count      ->", node.ask("counter-1", "count", {"text": TEXT}).get())
        print("summarize  ->", node.ask("summarizer", "summarize", {"text": TEXT}).get())

        print("parse '42' ->", node.ask("fragile", "parse", "42").get())
        try:
            node.ask("fragile", "parse", "oops").get()
        except macp.AgentError as e:
            print("parse 'oops' failed as expected:", e.remote_type, "-", e.remote_message)
        print("parse '7'  ->", node.ask("fragile", "parse", "7").get(), "(after a restart)")
        status = node.control("fragile", "status").get()
        print("fragile status:", status["state"], status["counters"])
        restarts = {c["name"]: c["restarts"] for c in node.children("workers")}
        print("restarts:", restarts)


if __name__ == "__main__":
    main()
