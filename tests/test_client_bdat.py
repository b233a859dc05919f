"""BDAT (RFC 3030 CHUNKING) against the testing server: what goes on the wire and how
failures are reported."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage

import pytest
import trio
from helpers.streams import CountingStream, client_for

from trio_smtp import (
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpFailedRecipientsError,
    SmtpResponseError,
)
from trio_smtp.protocol import normalize_line_endings
from trio_smtp.testing import Hangup, Respond, SmtpServer

MakeMessage = Callable[..., EmailMessage]
FROM = "from@example.org"
TO = ["to@example.net"]


@pytest.fixture
async def server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tls="none", max_message_size=50_000_000) as srv:
        yield srv


async def test_small_message_goes_with_its_envelope_in_one_write(server: SmtpServer) -> None:
    streams: list[CountingStream] = []
    body = b"Subject: one write\n\nhello\n"  # LF only: normalised for 7BIT/8BITMIME
    async with client_for(server, streams) as client:
        result = await client.send(body, sender=FROM, recipients=TO)
        writes_before = len(streams[0].writes)
        await client.send(body, sender=FROM, recipients=TO)
        transaction_writes = streams[0].writes[writes_before:]
    assert result.reply is not None and result.reply.code == 250
    assert len(transaction_writes) == 1  # MAIL + RCPT + BDAT n LAST + the octets
    assert transaction_writes[0].startswith(b"MAIL FROM:<from@example.org>")
    verbs = server.connections[0].verbs
    assert "DATA" not in verbs and verbs.count("BDAT") == 2
    message = server.messages[0]
    assert message.transfer == "BDAT"
    assert message.data == b"Subject: one write\r\n\r\nhello\r\n"  # no dot-stuffing either
    assert message.mail_params["SIZE"] == str(len(body))


async def test_large_message_is_sent_in_chunks_with_exact_sizes(server: SmtpServer) -> None:
    body = b"Subject: big\r\n\r\n" + b"".join(b".%07d\r\n" % i for i in range(400_000))
    async with client_for(server) as client:
        await client.send(body, sender=FROM, recipients=TO)
    commands = [c for c in server.connections[0].commands if c.verb == "BDAT"]
    assert len(commands) > 1
    assert commands[-1].argument.endswith(" LAST")
    assert sum(int(c.argument.split()[0]) for c in commands) == len(body)
    assert server.messages[0].data == body


async def test_streamed_body_over_bdat_pipelines_chunks(server: SmtpServer) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(30):
            yield b"line %d\n" % i * 5000

    async with client_for(server) as client:
        await client.send(pieces(), sender=FROM, recipients=TO)
    expected = normalize_line_endings(b"".join([b"line %d\n" % i * 5000 async for i in _n(30)]))
    assert server.messages[0].data == expected
    assert [c.verb for c in server.connections[0].commands].count("BDAT") > 1


async def _n(count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i


async def test_binary_body_goes_unchanged_with_binarymime(server: SmtpServer) -> None:
    body = b"Subject: bin\r\n\r\n\0\x01\xff bare\nlf and bare\rcr " + b"z" * 2000
    async with client_for(server) as client:
        await client.send(body, sender=FROM, recipients=TO)
    message = server.messages[0]
    assert message.mail_params["BODY"] == "BINARYMIME"
    assert message.data == body  # not normalised: BINARYMIME carries octets as they are


@pytest.mark.parametrize("disabled", ["BINARYMIME", "CHUNKING"])
async def test_nul_without_binarymime_is_refused_before_mail(disabled: str) -> None:
    async with SmtpServer(tls="none", disable={disabled}) as server, client_for(server) as client:
        with pytest.raises(SmtpError, match="NUL"):
            await client.send(b"Subject: x\r\n\r\na\0b\r\n", sender=FROM, recipients=TO)
        await client.send(b"Subject: x\r\n\r\nok\r\n", sender=FROM, recipients=TO)  # still usable
    assert server.connections[0].verbs.count("MAIL") == 1
    assert len(server.messages) == 1


async def test_long_lines_without_nul_still_go_as_text() -> None:
    body = b"Subject: long\r\n\r\n" + b"w" * 5000 + b"\r\n"
    async with (
        SmtpServer(tls="none", disable={"BINARYMIME"}) as server,
        client_for(server) as client,
    ):
        await client.send(body, sender=FROM, recipients=TO)
    assert server.messages[0].data == body
    assert server.messages[0].transfer == "BDAT"


async def test_refused_chunk_is_reported_and_last_never_sent(server: SmtpServer) -> None:
    body = b"Subject: big\r\n\r\n" + b"y" * 900 + b"\r\n"
    server.on("BDAT", Respond(552, "5.3.4 chunk too big"), times=1)
    async with client_for(server) as client:
        with pytest.raises(SmtpResponseError) as info:
            await client.send(body * 2000, sender=FROM, recipients=TO)
        assert info.value.reply is not None and info.value.reply.code == 552
        await client.send(b"Subject: next\r\n\r\nnext\r\n", sender=FROM, recipients=TO)
    # RFC 3030 §2: no chunk after a refusal (one was already in flight), never LAST.  This
    # server then accepts the in-flight chunk, which no longer fits the session: the client
    # does not trust it and the next send uses a new connection.
    first = server.connections[0].commands
    assert [c.argument for c in first if c.verb == "BDAT"] == ["262144", "262144"]
    assert [m.data for m in server.messages if m.accepted] == [b"Subject: next\r\n\r\nnext\r\n"]


async def test_final_chunk_refused(server: SmtpServer) -> None:
    server.on("END_OF_DATA", Respond(554, "5.7.1 spam"), times=1)
    async with client_for(server) as client:
        with pytest.raises(SmtpResponseError) as info:
            await client.send(b"Subject: x\r\n\r\nspam\r\n", sender=FROM, recipients=TO)
        assert info.value.reply is not None and info.value.reply.code == 554
        await client.send(b"Subject: x\r\n\r\nham\r\n", sender=FROM, recipients=TO)
    assert len(server.connections) == 1


@pytest.mark.parametrize("size", [100, 2_000_000], ids=["one-write", "chunked"])
async def test_connection_lost_after_last_chunk_is_delivery_unknown(
    server: SmtpServer, size: int
) -> None:
    server.on("END_OF_DATA", Hangup(), times=1)
    async with client_for(server) as client:
        with pytest.raises(SmtpDeliveryUnknownError):
            await client.send(
                b"Subject: x\r\n\r\n" + b"q" * size + b"\r\n", sender=FROM, recipients=TO
            )
        await client.send(b"Subject: x\r\n\r\nagain\r\n", sender=FROM, recipients=TO)
    assert len(server.connections) == 2


async def test_all_recipients_refused_in_the_one_write(server: SmtpServer) -> None:
    server.on("RCPT", Respond(550, "5.1.1 no such user"))
    async with client_for(server) as client:
        with pytest.raises(SmtpFailedRecipientsError) as info:
            await client.send(b"Subject: x\r\n\r\nnobody\r\n", sender=FROM, recipients=TO)
        assert info.value.result is None
        server.clear_faults()
        await client.send(b"Subject: x\r\n\r\nsomebody\r\n", sender=FROM, recipients=TO)
    assert len(server.connections) == 1
    assert [m.data for m in server.messages if m.accepted] == [b"Subject: x\r\n\r\nsomebody\r\n"]


async def test_partial_refusal_delivers_to_the_others(server: SmtpServer) -> None:
    server.on("RCPT", Respond(550, "5.1.1 no such user"), match="bad@example.net")
    async with client_for(server) as client:
        with pytest.raises(SmtpFailedRecipientsError) as info:
            await client.send(
                b"Subject: x\r\n\r\nhi\r\n",
                sender="from@example.org",
                recipients=["good@example.net", "bad@example.net"],
            )
    assert info.value.result is not None
    assert info.value.result.accepted == ("good@example.net",)
    assert server.messages[0].recipients == ["good@example.net"]


async def test_cancelled_mid_bdat_never_sends_last(server: SmtpServer) -> None:
    sent_some = trio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"Subject: x\r\n\r\n" + b"a" * 300_000 + b"\r\n"
        yield b"b" * 300_000 + b"\r\n"
        sent_some.set()
        await trio.sleep_forever()
        yield b"never"

    async with client_for(server) as client:
        client.send_async(slow(), "t", sender=FROM, recipients=TO)
        await sent_some.wait()
        client.send_async_cancel()
        event = await client.completed.receive()
    assert event.cancelled
    await server.wait_for_connection_closed()
    commands = server.connections[0].commands
    assert any(c.verb == "BDAT" for c in commands)
    assert not any(c.verb == "BDAT" and "LAST" in c.argument for c in commands)
    assert server.messages == []


async def test_without_pipelining_one_chunk_at_a_time() -> None:
    body = b"Subject: x\r\n\r\n" + b"p" * 1_000_000 + b"\r\n"
    async with (
        SmtpServer(tls="none", disable={"PIPELINING"}) as server,
        client_for(server) as client,
    ):
        await client.send(body, sender=FROM, recipients=TO)
    assert server.messages[0].data == body
    assert server.connections[0].verbs[1:4] == ["MAIL", "RCPT", "BDAT"]
