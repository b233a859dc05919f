"""A raw SMTP client for observing the testing server byte by byte."""

from __future__ import annotations

import ssl

import trio

from trio_smtp.protocol import Reply, ReplyParser


class RawClient:
    """Sends exact bytes and parses replies with the protocol core's parser."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.parser = ReplyParser()
        self.received = bytearray()

    @classmethod
    async def connect(cls, host: str, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream(host, port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def reply(self) -> Reply:
        """The next complete reply; AssertionError if the server closes first."""
        while True:
            reply = self.parser.next_reply()
            if reply is not None:
                return reply
            data = bytes(await self.stream.receive_some(65536))
            assert data, "server closed the connection before replying"
            self.received += data
            self.parser.receive_data(data)

    async def command(self, line: bytes) -> Reply:
        await self.send(line)
        return await self.reply()

    async def read_until_closed(self) -> bytes:
        """Everything until EOF (raises on a broken stream)."""
        chunks = bytearray()
        while data := await self.stream.receive_some(65536):
            chunks += data
        return bytes(chunks)

    async def starttls(self, context: ssl.SSLContext, hostname: str = "127.0.0.1") -> None:
        self.stream = trio.SSLStream(self.stream, context, server_hostname=hostname)
        await self.stream.do_handshake()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def start_session(client: RawClient, helo: bytes = b"EHLO client.test\r\n") -> Reply:
    """Read the greeting, send EHLO, return the EHLO reply."""
    greeting = await client.reply()
    assert greeting.code == 220
    return await client.command(helo)


async def send_mail(client: RawClient, body: bytes = b"Subject: t\r\n\r\nhello\r\n") -> Reply:
    """One MAIL/RCPT/DATA transaction (not pipelined); returns the reply to the data."""
    assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 250
    assert (await client.command(b"RCPT TO:<b@example.org>\r\n")).code == 250
    assert (await client.command(b"DATA\r\n")).code == 354
    return await client.command(body + b".\r\n")
