"""The dashboard's browser tests' parts: a 3-node topology run as `macp node start` processes,
a gateway member of it serving the HTTP app (the dashboard at /), and the system's chromium
driven by Playwright (never a browser of Playwright's own: the machine's /usr/bin/chromium,
which .ci/run installs where it is missing; a missing one fails the tests, it never skips them).

Screenshots go to $MACP_ARTIFACTS, else test-artifacts/ at the repository's root.
"""

from __future__ import annotations

import os
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from playwright.sync_api import expect
from procs import QUICK_CLUSTER
from topology_procs import ROOT, TopologyNodes

from macp.gateway import Gateway, Guard, Member

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, ConsoleMessage, FloatRect, Page, Playwright

__all__ = [
    "AGENTS",
    "CHROMIUM",
    "NODES",
    "Tab",
    "artifacts",
    "environment",
    "launch",
    "serve",
    "start_topology",
    "topology_file",
]

expect.set_options(timeout=10_000)  # a deadline for what the page shows (2 s where it must be)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
NODES = ["head", "n1", "n2"]
AGENTS = {
    "splitter@head", "counter-1@n1", "counter-2@n2",
    "echo-1@head", "echo-2@n1", "echo-3@n2",
}  # fmt: skip
TOPOLOGY = """\
    name: dash
    nodes:
      - {name: head, listen: "tcp://127.0.0.1:0", head: true}
      - {name: n1, listen: "tcp://127.0.0.1:0"}
      - {name: n2, listen: "tcp://127.0.0.1:0"}
    agents:
      - {name: splitter, class: "examples.wordcount.agents:Splitter", node: head}
      - {name: counter, class: "examples.wordcount.agents:Counter", node: [n1, n2], replicas: 2}
      - {name: echo, class: "agents:Echo", node: [head, n1, n2], replicas: 3,
         capabilities: [echo]}
    topology: {kind: hub-and-spoke, hub: splitter, spokes: [counter]}
    workflows:
      - name: fan
        steps:
          - {id: first, type: echo, body: {x: "${input}"}, capabilities: [echo]}
          - {id: left, type: echo, depends_on: [first], capabilities: [echo]}
          - {id: right, type: echo, depends_on: [first], capabilities: [echo]}
          - {id: last, type: echo, depends_on: [left, right], capabilities: [echo]}
    monitor:
      sample_s: 0.5
      rules:
        - {name: echo-done, expr: "tasks.succeeded{type=echo} >= 1"}
    settings: {heartbeat_interval_s: 0.1, acceptable_pause_s: 0.2}
"""


def artifacts() -> Path:
    """Where screenshots go (made if missing)."""
    where = Path(os.environ.get("MACP_ARTIFACTS") or ROOT / "test-artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


def topology_file(folder: Path, extra_agents: str = "", extra: str = "") -> Path:
    """The 3-node topology's file, written in ``folder``; ``extra_agents``: more YAML lines
    under ``agents:``, ``extra``: more top-level YAML."""
    text = textwrap.dedent(TOPOLOGY)
    if extra_agents:
        text = text.replace("topology: {", extra_agents + "topology: {", 1)
    file = folder / "dash.yaml"
    file.write_text(text + extra)
    return file


def environment(folder: Path) -> dict[str, str]:
    """The environment of the topology's processes: a data folder in ``folder``, tests/agents.py
    importable as ``agents``."""
    path = os.pathsep.join(p for p in [str(ROOT / "tests"), os.environ.get("PYTHONPATH")] if p)
    return {**os.environ, "MACP_DATA_DIR": str(folder / "data"), "PYTHONPATH": path}


def start_topology(folder: Path, extra_agents: str = "") -> TopologyNodes:
    """The 3-node topology (its file written in ``folder``) as node processes, every agent
    registered and available; ``extra_agents``: more YAML lines under ``agents:``."""
    file = topology_file(folder, extra_agents)
    nodes = TopologyNodes(str(file), NODES, environment(folder))
    try:
        return nodes.start(AGENTS)
    except BaseException:
        nodes.kill()
        raise


@contextmanager
def serve(nodes: TopologyNodes, guard: Guard | None = None) -> Iterator[str]:
    """A gateway member of ``nodes``' cluster serving the HTTP app on 127.0.0.1: its URL."""
    member = Member.join(nodes.head, settings=QUICK_CLUSTER)
    gateway = Gateway(member, jsonrpc=None, http="127.0.0.1:0", guard=guard).start()
    try:
        url = gateway.addresses["http"]
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/ready").status_code == 200
        yield url
    finally:
        gateway.stop()


@contextmanager
def launch(playwright: Playwright) -> Iterator[Browser]:
    """The system's chromium, headless, with a fresh profile of its own (Playwright makes one
    for each launch, and each context starts with no cookies).

    Raises:
        FileNotFoundError: there is no chromium at :data:`CHROMIUM` (the tests fail, never skip).
    """
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(
            f"the browser tests drive the system's chromium at {CHROMIUM}, and there is none: "
            "install it with 'apt-get install -y --no-install-recommends chromium' (.ci/run does)"
        )
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class Tab:
    """A page of a fresh browser context (its own cookies), every console error and uncaught
    exception it had kept in :attr:`errors`."""

    page: Page
    errors: list[str] = field(default_factory=list)

    @classmethod
    @contextmanager
    def open(cls, browser: Browser, url: str, **context: Any) -> Iterator[Tab]:
        opened = browser.new_context(viewport={"width": 1400, "height": 900}, **context)
        try:
            tab = cls(opened.new_page())
            tab.page.on("console", tab._console)
            tab.page.on("pageerror", lambda e: tab.errors.append(f"uncaught: {e}"))
            if url:
                tab.page.goto(url)
            yield tab
        finally:
            opened.close()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def shot(
        self,
        name: str,
        *,
        view: str | None = None,
        full_page: bool = True,
        height: int | None = None,
    ) -> Path:
        """A screenshot of the page as it is (of its section ``view`` only, or its top
        ``height`` pixels, if given), saved as an artifact."""
        path = artifacts() / f"{name}.png"
        if view is not None:
            self.page.locator(f"#view-{view}").screenshot(path=str(path))
        elif height is not None:
            clip: FloatRect = {"x": 0, "y": 0, "width": 1400, "height": height}
            self.page.screenshot(path=str(path), clip=clip)
        else:
            self.page.screenshot(path=str(path), full_page=full_page)
        return path
