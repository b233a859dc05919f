"""Shared fixtures and helpers (kept minimal).  The ``smtp_server`` / ``smtp_client_factory``
fixtures come from the trio_smtp.testing pytest plugin; test modules in this directory import
the helpers below with ``from conftest import ...`` (tests/ is on sys.path: no __init__.py)."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

import pytest
import trio

from trio_smtp import Security, SmtpClient
from trio_smtp.testing import SmtpServer


def build_message(
    to: str = "rcpt@example.net", *, body: str = "Hello from trio_smtp.\n", **headers: str
) -> EmailMessage:
    """A small message from ``sender@example.org`` to ``to``; extra headers by keyword
    (underscores become hyphens: ``Message_ID=...``)."""
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.org>"
    msg["To"] = to
    msg["Subject"] = "test"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


@pytest.fixture
def make_message() -> Callable[..., EmailMessage]:
    """``make_message(to=..., body=..., **headers)`` -> a small EmailMessage (see
    :func:`build_message`)."""
    return build_message


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
