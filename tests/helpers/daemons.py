"""Starting real servers on loopback: a free port, and waiting until one listens on it."""

from __future__ import annotations

import socket

import trio


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server that must be told its port (one that
    cannot bind port 0 and report it: smtp-sink, Exim, aiosmtpd's Controller)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(port: int, process: trio.Process, name: str) -> None:
    """Return once 127.0.0.1:``port`` accepts a connection; raise ``RuntimeError`` with
    what ``process`` printed (if its output is a pipe) if it exits first, or after 15 s."""
    with trio.fail_after(15):
        while True:
            if process.poll() is not None:
                output: bytes | bytearray = b""
                if process.stdout is not None:
                    output = await process.stdout.receive_some()
                raise RuntimeError(f"{name} exited with {process.returncode}: {output!r}")
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return
