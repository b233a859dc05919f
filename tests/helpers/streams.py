"""Streams that wrap a real connection to watch or break it, and a client built on them."""

from __future__ import annotations

import trio

from trio_smtp import Security, SmtpClient
from trio_smtp.testing import SmtpServer


class ForwardingStream(trio.abc.Stream):
    """A stream that hands everything to ``inner``: subclass it and override the one method
    a test needs to watch or break."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingStream(ForwardingStream):
    """A TCP stream that records every write the client makes (to check one write per
    pipelined group)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        super().__init__(inner)
        self.writes: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        await self.inner.send_all(data)


def client_for(server: SmtpServer, streams: list[CountingStream] | None = None) -> SmtpClient:
    """A plain-text client for ``server`` whose connections are CountingStreams, appended
    to ``streams`` as they open."""

    async def factory() -> trio.abc.Stream:
        stream = CountingStream(await trio.open_tcp_stream(server.host, server.port))
        if streams is not None:
            streams.append(stream)
        return stream

    return SmtpClient(server.host, server.port, security=Security.NONE, stream_factory=factory)
