"""An agent outside macp: it speaks the gateway's external-agent protocol over a WebSocket and
imports nothing of macp (only the `websockets` package), as a program in any language would.

    python agent.py --url ws://127.0.0.1:8080/ws --name ext-1 --capability count \
        [--key AGENT_KEY] [--reconnect]

The key may also come from the MACP_AGENT_KEY environment variable. The agent runs three task
types:

    echo   {...}                     -> {"echo": {...}, "agent": NAME}
    count  {"to": N, "gate": PATH?}  -> {"count": N, "agent": NAME}, with progress k/N after each
                                        step; with "gate", it waits for the file PATH to exist
                                        before its last step (a task you can hold open)
    fail   {"message": TEXT}         -> an error, which the coordinator retries

It prints one JSON line per thing that happens (registered, task, control, done, refused, closed),
so a supervisor or a test can follow it. Exit status: 0 when the gateway closed the connection,
2 when it refused the registration (the printed "refused" line says why).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

REFUSED = {4400, 4401, 4409}  # a register that does not fit, a bad key, a name taken


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Agent:
    def __init__(self, name: str) -> None:
        self.name = name
        self.running: dict[tuple[str, int], asyncio.Task[None]] = {}

    async def serve(self, ws: ClientConnection) -> None:
        """Take the gateway's messages until the connection ends."""
        async for text in ws:
            message = json.loads(text)
            kind = message["type"]
            if kind == "task_assigned":
                key = (message["task_id"], message["attempt"])
                say("task", task_id=key[0], attempt=key[1], task_type=message["task_type"])
                self.running[key] = asyncio.create_task(self.run(ws, message))
            elif kind == "control":
                say("control", command=message["command"], params=message["params"])
            elif kind == "task_expired":
                task = self.running.pop((message["task_id"], message["attempt"]), None)
                if task is not None:
                    task.cancel()
            elif kind == "error":
                say("gateway_error", message=message["message"], code=message["code"])

    async def run(self, ws: ClientConnection, task: dict[str, Any]) -> None:
        ids = {"task_id": task["task_id"], "attempt": task["attempt"]}
        body = task["body"] or {}
        try:
            if task["task_type"] == "echo":
                answer = {"type": "result", **ids, "result": {"echo": body, "agent": self.name}}
            elif task["task_type"] == "count":
                answer = await self.count(ws, ids, body)
            else:
                text = body.get("message", "failed") if isinstance(body, dict) else "failed"
                answer = {"type": "error", **ids, "message": text}
            await ws.send(json.dumps(answer))
            say("done", **ids, answer=answer["type"])
        except ConnectionClosed:
            pass
        finally:
            self.running.pop((ids["task_id"], ids["attempt"]), None)

    async def count(self, ws: ClientConnection, ids: dict[str, Any], body: dict[str, Any]) -> Any:
        to, gate = int(body.get("to", 1)), body.get("gate")
        for step in range(1, to + 1):
            if step == to and gate:
                # Held open until someone makes the file: another process's, with no event.
                while not Path(gate).exists():  # noqa: ASYNC110, ASYNC240
                    await asyncio.sleep(0.02)
            message = f"step {step} of {to}"
            await ws.send(
                json.dumps({"type": "progress", **ids, "fraction": step / to, "message": message})
            )
        return {"type": "result", **ids, "result": {"count": to, "agent": self.name}}


async def session(args: argparse.Namespace) -> int | None:
    """One connection: register, then serve. The exit status, or None to reconnect."""
    register: dict[str, Any] = {
        "type": "register",
        "name": args.name,
        "capabilities": args.capability,
        "metadata": {"language": "python", "program": "examples/external_agent/agent.py"},
    }
    if args.key:
        register["key"] = args.key
    async with connect(args.url) as ws:
        await ws.send(json.dumps(register))
        answer = json.loads(await ws.recv())
        if answer["type"] != "registered":
            say("refused", message=answer["message"], code=answer["code"])
            return 2
        say("registered", address=answer["address"])
        with contextlib.suppress(ConnectionClosed):
            await Agent(args.name).serve(ws)
        code = ws.close_code
    say("closed", code=code)
    return None if args.reconnect and code not in REFUSED else 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the gateway's WebSocket, ws://HOST:PORT/ws")
    parser.add_argument("--name", required=True)
    parser.add_argument("--capability", action="append", default=[])
    parser.add_argument("--key", default=os.environ.get("MACP_AGENT_KEY"))
    parser.add_argument("--reconnect", action="store_true", help="connect again when dropped")
    args = parser.parse_args()
    pause_s = 0.5
    while True:
        try:
            status = await session(args)
        except (OSError, ConnectionClosed) as e:
            say("unreachable", error=str(e))
            status = None if args.reconnect else 1
        if status is not None:
            return status
        await asyncio.sleep(pause_s)  # then register again, under the same name
        pause_s = min(pause_s * 2, 10.0)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
