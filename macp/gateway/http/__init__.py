"""The gateway over HTTP: its WebSocket endpoint (:mod:`.ws`) and the events it serves
(:mod:`.events`)."""
