"""Transport between nodes: ZeroMQ ROUTER/DEALER sockets owned by one I/O thread."""
