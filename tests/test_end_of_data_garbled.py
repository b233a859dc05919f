"""A malformed reply to the end of data (garbage, a line over the limit, a bad code) is "may
have been delivered" (SmtpDeliveryUnknownError), not a refusal: once the write carrying the
end of data completed, the server has the whole message (RFC 5321 §4.1.1.4).  Every path:
DATA (in memory and streamed), BDAT LAST alone, in the one-write group and after chunks,
send_async and send_many.  Before the end of data the same reply stays SmtpProtocolError.
Real servers on loopback; the server side checks that the connection is closed, not reused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from helpers.streams import CountingStream
from helpers.streams import client_for as counting_client

from trio_smtp import (
    OutgoingMessage,
    Security,
    SendResult,
    SmtpClient,
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpProtocolError,
)
from trio_smtp.testing import Handover, SmtpServer

FROM = "a@example.org"
TO = ["b@example.net"]
BODY = b"Subject: hi\r\n\r\nhello\r\n"

GARBLED = {
    "garbage": b"\x00\xffgarbage\r\n",
    "line over the limit": b"250 " + b"x" * 5000 + b"\r\n",
    "bad code": b"650 2.0.0 Ok: queued\r\n",
    "codes that differ": b"250-2.0.0 Ok\r\n251 2.0.0 queued\r\n",
}


def garbled(reply: bytes) -> Handover:
    """Answer with ``reply``, then read until the client closes the connection (so the
    connection ends because the client dropped it, not because the server did)."""

    async def handler(stream: trio.abc.Stream, pending: bytes) -> None:
        await stream.send_all(reply)
        try:
            while await stream.receive_some():
                pass
        except trio.BrokenResourceError:
            pass

    return Handover(handler)


def client_for(server: SmtpServer) -> SmtpClient:
    return SmtpClient(server.host, server.port, security=Security.NONE)


def assert_unknown(error: object) -> None:
    assert isinstance(error, SmtpDeliveryUnknownError)
    assert "may have been delivered" in str(error)
    assert isinstance(error.__cause__, SmtpProtocolError)


async def expect_unknown_then_reconnect(server: SmtpServer, message: object) -> None:
    """``message`` is sent into the garbled reply: SmtpDeliveryUnknownError; the next send
    goes over a new connection (the first was closed, not reused)."""
    async with client_for(server) as client:
        with pytest.raises(SmtpDeliveryUnknownError) as info:
            await client.send(message, sender=FROM, recipients=TO)  # type: ignore[arg-type]
        assert_unknown(info.value)
        result = await client.send(BODY, sender=FROM, recipients=TO)
    assert result.reply is not None and result.reply.code == 250
    first, second = server.connections
    assert first.close_reason == "fault"  # the handler returned: the client closed it
    assert first.verbs.count("MAIL") == 1
    assert second.verbs.count("MAIL") == 1
    server.check()


@pytest.mark.parametrize("reply", GARBLED.values(), ids=GARBLED.keys())
async def test_data_in_memory(reply: bytes) -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", garbled(reply), times=1)
        await expect_unknown_then_reconnect(server, BODY)
        # The server did get the whole message: "unknown" was the honest answer.
        assert server.messages[0].data == BODY
        assert server.messages[0].transfer == "DATA"


async def test_data_in_memory_without_pipelining() -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING", "PIPELINING"}) as server:
        server.on("END_OF_DATA", garbled(GARBLED["garbage"]), times=1)
        await expect_unknown_then_reconnect(server, BODY)


async def test_data_large_in_memory() -> None:
    # Over one write's worth: written while the server is watched (the streamed path).
    big = b"Subject: big\r\n\r\n" + (b"z" * 78 + b"\r\n") * 7_500
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", garbled(GARBLED["bad code"]), times=1)
        await expect_unknown_then_reconnect(server, big)
        assert server.messages[0].data == big


async def _chunks(count: int) -> AsyncIterator[bytes]:
    yield b"Subject: streamed\r\n\r\n"
    for i in range(count):
        await trio.lowlevel.checkpoint()
        yield b"line %d\r\n" % i


@pytest.mark.parametrize("reply", GARBLED.values(), ids=GARBLED.keys())
async def test_data_streamed_body(reply: bytes) -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", garbled(reply), times=1)
        await expect_unknown_then_reconnect(server, _chunks(100))
        assert server.messages[0].data.endswith(b"line 99\r\n")


async def test_data_streamed_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(b"Subject: file\r\n\r\n" + b"from a file\r\n" * 1000)
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", garbled(GARBLED["line over the limit"]), times=1)
        await expect_unknown_then_reconnect(server, path)


@pytest.mark.parametrize("reply", GARBLED.values(), ids=GARBLED.keys())
async def test_bdat_last_in_the_envelope_group(reply: bytes) -> None:
    # CHUNKING + PIPELINING, small message: MAIL, RCPT and BDAT n LAST in one write.
    async with SmtpServer(tls="none") as server:
        server.on("END_OF_DATA", garbled(reply), times=1)
        await expect_unknown_then_reconnect(server, BODY)
        assert server.messages[0].transfer == "BDAT"
        assert server.messages[0].data == BODY


async def test_bdat_group_garbled_reply_to_mail_is_unknown() -> None:
    # In the one-write group, MAIL's reply comes after BDAT LAST was written: the server may
    # process the whole group before replying (RFC 2920 §3.1).
    async with SmtpServer(tls="none") as server:
        server.on("MAIL", garbled(GARBLED["garbage"]), times=1)
        await expect_unknown_then_reconnect(server, BODY)


async def test_bdat_last_alone() -> None:
    # CHUNKING without PIPELINING: MAIL, RCPT, then BDAT n LAST in a write of its own.
    async with SmtpServer(tls="none", disable={"PIPELINING"}) as server:
        server.on("END_OF_DATA", garbled(GARBLED["codes that differ"]), times=1)
        await expect_unknown_then_reconnect(server, BODY)
        assert server.connections[0].verbs == ["EHLO", "MAIL", "RCPT", "BDAT"]


async def test_bdat_streamed_body() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("END_OF_DATA", garbled(GARBLED["bad code"]), times=1)
        await expect_unknown_then_reconnect(server, _chunks(100))
        assert server.messages[0].transfer == "BDAT"


async def test_bdat_garbled_reply_to_the_chunk_before_last() -> None:
    # With PIPELINING a chunk's reply is read after the next chunk -- here BDAT LAST -- was
    # written: garbage then means the server may have the whole message.
    big = b"Subject: big\r\n\r\n" + (b"c" * 78 + b"\r\n") * 5_000  # two chunks
    async with SmtpServer(tls="none") as server:
        server.on("BDAT", garbled(GARBLED["garbage"]), match=lambda a: "LAST" not in a, times=1)
        await expect_unknown_then_reconnect(server, big)
        assert server.connections[0].verbs == ["EHLO", "MAIL", "RCPT", "BDAT"]


async def test_send_async_event_carries_the_unknown_error() -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", garbled(GARBLED["garbage"]), times=1)
        async with client_for(server) as client:
            client.send_async(BODY, "job-1", sender=FROM, recipients=TO)
            event = await client.completed.receive()
            client.send_async(BODY, "job-2", sender=FROM, recipients=TO)
            after = await client.completed.receive()
    assert event.user_token == "job-1"
    assert not event.cancelled
    assert event.result is None
    assert_unknown(event.error)
    assert after.error is None
    assert len(server.connections) == 2


@pytest.mark.parametrize("verb", ["MAIL", "RCPT"])
@pytest.mark.parametrize("disable", [{"CHUNKING"}, {"CHUNKING", "PIPELINING"}])
async def test_garbled_reply_before_the_end_of_data_stays_a_protocol_error(
    verb: str, disable: set[str]
) -> None:
    async with SmtpServer(tls="none", disable=disable) as server:
        server.on(verb, garbled(GARBLED["garbage"]), times=1)
        async with client_for(server) as client:
            with pytest.raises(SmtpProtocolError) as info:
                await client.send(BODY, sender=FROM, recipients=TO)
            assert not isinstance(info.value, SmtpDeliveryUnknownError)
            await client.send(BODY, sender=FROM, recipients=TO)
    assert [m.data for m in server.messages] == [BODY]
    assert len(server.connections) == 2


async def test_garbled_early_reply_during_data_stays_a_protocol_error() -> None:
    # Garbage in answer to DATA's 354 position (before any data): not delivered.
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("DATA", garbled(GARBLED["bad code"]), times=1)
        async with client_for(server) as client:
            with pytest.raises(SmtpProtocolError):
                await client.send(BODY, sender=FROM, recipients=TO)
    assert server.messages == []


def _batch(count: int) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(b"Subject: %d\r\n\r\nmessage %d\r\n" % (i, i), sender=FROM, recipients=TO)
        for i in range(count)
    ]


@pytest.mark.parametrize("reply", GARBLED.values(), ids=GARBLED.keys())
async def test_send_many_pipelined(reply: bytes) -> None:
    # Message 0's terminator and message 1's envelope share a write; the garbled reply to
    # the terminator leaves 0 unknown and 1 not delivered; 2 goes on a new connection.
    batch = _batch(3)
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", garbled(reply), times=1)
        async with client_for(server) as client:
            first, second, third = await client.send_many(batch)
    assert_unknown(first)
    assert isinstance(second, SmtpConnectError)
    assert not isinstance(second, SmtpDeliveryUnknownError)
    assert isinstance(third, SendResult)
    assert [m.data for m in server.messages] == [batch[0].message, batch[2].message]
    assert len(server.connections) == 2
    server.check()


async def test_send_many_pipelined_last_message() -> None:
    # The last message's terminator goes alone (the flush): garbled, it is unknown too.
    batch = _batch(3)
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", garbled(GARBLED["garbage"]))  # every time
        async with client_for(server) as client:
            first, second, third = await client.send_many(batch)
    assert_unknown(first)
    assert isinstance(second, SmtpConnectError)  # its envelope shared first's write
    assert not isinstance(second, SmtpDeliveryUnknownError)
    assert_unknown(third)
    assert [m.data for m in server.messages] == [batch[0].message, batch[2].message]
    assert len(server.connections) == 2


async def test_send_many_with_chunking() -> None:
    # With CHUNKING the messages go through a window of transactions in flight: every
    # message whose group was written before the garbled reply was read is unknown too
    # (its group was wholly written, RFC 2920 §3.1); the others go on a new connection.
    batch = _batch(3)
    streams: list[CountingStream] = []
    async with SmtpServer(tls="none") as server:
        server.on("END_OF_DATA", garbled(GARBLED["line over the limit"]), times=1)
        async with counting_client(server, streams) as client:
            outcomes = await client.send_many(batch)
    assert_unknown(outcomes[0])
    written_first = b"".join(streams[0].writes)
    for item, outcome in zip(batch[1:], outcomes[1:], strict=True):
        assert isinstance(item.message, bytes)
        if item.message in written_first:
            assert_unknown(outcome)
        else:
            assert isinstance(outcome, SendResult)
    # Never reused after the garbled reply: a new connection for what was not written.
    retried = any(isinstance(outcome, SendResult) for outcome in outcomes)
    assert len(server.connections) == 1 + retried
