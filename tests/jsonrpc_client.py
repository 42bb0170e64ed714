"""A raw JSON-RPC line client for the gateway's tests: a TCP socket, bytes in, lines out."""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any, Self


class LineClient:
    """One connection to a JSON-RPC listener at ``HOST:PORT``."""

    def __init__(self, address: str, timeout_s: float = 20.0) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self._file = self.sock.makefile("rb")
        self._ids = itertools.count(1)

    def send(self, message: Any) -> None:
        """``message`` as one line (bytes are sent as they are)."""
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.sock.sendall(data)

    def receive(self) -> Any:
        """The next line, parsed; ``None`` when the server closed the connection."""
        line = self._file.readline()
        return json.loads(line) if line else None

    def call(self, method: str, params: Any = None) -> Any:
        """Send a request and return its response (nothing else may be in flight)."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            request["params"] = params
        self.send(request)
        response = self.receive()
        assert response is not None, f"the connection closed instead of answering {method}"
        assert response["id"] == request["id"]
        return response

    def result(self, method: str, params: Any = None) -> Any:
        response = self.call(method, params)
        assert "result" in response, response
        return response["result"]

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
