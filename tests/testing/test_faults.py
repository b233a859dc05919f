"""Each fault injection does what it says, observed from the client side."""

from __future__ import annotations

import smtplib

import pytest
import trio
import trio.testing
from helpers.raw_client import RawClient, send_mail, start_session

from trio_smtp.testing import (
    Delay,
    Drip,
    EarlyReply,
    Handover,
    Hangup,
    Inject,
    Respond,
    ServerCrashError,
    Shutdown,
    SmtpServer,
)


async def _connect(server: SmtpServer) -> RawClient:
    client = await RawClient.connect(server.host, server.port)
    await start_session(client)
    return client


async def test_respond_refuses_one_recipient_only() -> None:
    async with SmtpServer(tls="none") as server:
        fault = server.on("RCPT", Respond(550, "5.1.1 No such user"), match="bad@example.org")

        def client() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP(server.host, server.port) as smtp:
                return smtp.sendmail(
                    "a@example.org", ["good@example.org", "bad@example.org"], b"\r\nhi\r\n"
                )

        refused = await trio.to_thread.run_sync(client)
        message = await server.wait_for_message()
    assert refused == {"bad@example.org": (550, b"5.1.1 No such user")}
    assert message.recipients == ["good@example.org"]
    assert fault.hits == 1


async def test_respond_multiline_and_positive_override() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("NOOP", Respond(250, ["first line", "second line"]))
        server.on("MAIL", Respond(250, "2.1.0 custom ok"))
        client = await _connect(server)
        reply = await client.command(b"NOOP\r\n")
        assert reply.lines == ("first line", "second line")
        assert b"250-first line\r\n250 second line\r\n" in client.received
        # A positive Respond still performs the command: RCPT is now in sequence.
        assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).text == "2.1.0 custom ok"
        assert (await client.command(b"RCPT TO:<b@example.org>\r\n")).code == 250
        await client.aclose()


async def test_times_limits_a_fault() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("NOOP", Respond(451, "4.3.0 try later"), times=1)
        client = await _connect(server)
        assert (await client.command(b"NOOP\r\n")).code == 451
        assert (await client.command(b"NOOP\r\n")).code == 250
        await client.aclose()


async def test_hangup_closes_without_reply() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("END_OF_DATA", Hangup())
        client = await _connect(server)
        for line in (b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.org>\r\n"):
            assert (await client.command(line)).code == 250
        assert (await client.command(b"DATA\r\n")).code == 354
        await client.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert await client.read_until_closed() == b""
        message = await server.wait_for_message()
    # The server did receive the message: exactly the "delivery unknown" situation.
    assert message.reply is None
    assert message.data == b"Subject: x\r\n\r\nbody\r\n"
    assert server.connections[0].close_reason == "fault"


async def test_shutdown_replies_421_and_closes() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("MAIL", Shutdown())
        client = await _connect(server)
        reply = await client.command(b"MAIL FROM:<a@example.org>\r\n")
        assert reply.code == 421
        assert await client.read_until_closed() == b""
        await client.aclose()


async def test_delay_uses_trio_time(autojump_clock: trio.testing.MockClock) -> None:
    async with SmtpServer(tls="none") as server:
        server.on("GREETING", Delay(300))
        client = await RawClient.connect(server.host, server.port)
        start = trio.current_time()
        assert (await client.reply()).code == 220
        assert trio.current_time() - start >= 300
        await client.aclose()


async def test_drip_writes_one_byte_at_a_time() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("NOOP", Drip(0))
        client = await _connect(server)
        await client.send(b"NOOP\r\n")
        sizes: list[int] = []
        expected = b"250 2.0.0 Ok\r\n"
        while sum(sizes) < len(expected):
            # receive_some(1) would hide the server's behaviour; ask for plenty.
            sizes.append(len(await client.stream.receive_some(1000)))
            await trio.sleep(0.01)
        assert sum(sizes) == len(expected)
        await client.aclose()
    assert len(sizes) > 1


async def test_inject_after_starttls_220_in_the_same_write() -> None:
    async with SmtpServer() as server:
        server.on("STARTTLS", Inject(b"250 injected\r\n"))
        client = await _connect(server)
        await client.send(b"STARTTLS\r\n")
        data = await client.stream.receive_some(1000)
        # One read gets both: what a client must detect and abort on (RFC 3207 §6).
        assert data == b"220 2.0.0 Ready to start TLS\r\n250 injected\r\n"
        await client.aclose()


async def test_starttls_discards_pipelined_plaintext() -> None:
    async with SmtpServer() as server:
        client = await _connect(server)
        await client.send(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
        assert (await client.reply()).code == 220
        await client.starttls(server.ssl_context)
        reply = await client.command(b"RCPT TO:<b@example.org>\r\n")
        assert reply.code == 503  # the smuggled MAIL was not executed
        await client.aclose()
    assert server.connections[0].discarded_after_starttls == len(
        b"MAIL FROM:<evil@example.org>\r\n"
    )


async def test_early_reply_during_data_stops_reading() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("DATA", EarlyReply(552, "5.3.4 Too big, stop", after=10, hold=1))
        client = await _connect(server)
        for line in (b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.org>\r\n"):
            await client.command(line)
        assert (await client.command(b"DATA\r\n")).code == 354
        await client.send(b"0123456789")
        reply = await client.reply()
        assert reply.code == 552
        # It reads no more: a client that keeps writing fills the socket buffers and blocks.
        with trio.move_on_after(0.5) as scope:
            while True:
                await client.send(b"x" * 65536)
        assert scope.cancelled_caught
        await client.aclose()
    assert server.messages == []


async def test_handover_gives_the_raw_stream_to_the_test() -> None:
    seen: list[bytes] = []

    async def handler(stream: trio.abc.Stream, pending: bytes) -> None:
        seen.append(pending)
        await stream.send_all(b"299 not SMTP at all\r\n")

    async with SmtpServer(tls="none") as server:
        server.on("RSET", Handover(handler))
        client = await _connect(server)
        await client.send(b"RSET\r\nNOOP\r\n")
        assert await client.read_until_closed() == b"299 not SMTP at all\r\n"
        await client.aclose()
    assert seen == [b"NOOP\r\n"]


async def test_a_crash_in_a_handover_is_surfaced() -> None:
    async def handler(stream: trio.abc.Stream, pending: bytes) -> None:
        raise KeyError("boom")

    server = SmtpServer(tls="none")
    server.on("NOOP", Handover(handler))
    with pytest.raises(ServerCrashError) as info:
        async with server:
            client = await _connect(server)
            await client.send(b"NOOP\r\n")
            await server.wait_for_message()  # raises as soon as the handler crashes
    assert isinstance(info.value.crashes[0], KeyError)
    assert server.connections[0].close_reason == "crash"


async def test_greeting_554_refuses_everything_but_quit() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("GREETING", Respond(554, "5.3.2 no service"))
        client = await RawClient.connect(server.host, server.port)
        assert (await client.reply()).code == 554
        assert (await client.command(b"EHLO x\r\n")).code == 503
        assert (await client.command(b"QUIT\r\n")).code == 221
        await client.aclose()


async def test_end_of_data_failure_is_recorded_as_rejected() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("END_OF_DATA", Respond(451, "4.3.0 queue full"))
        client = await _connect(server)
        reply = await send_mail(client)
        assert reply.code == 451
        await client.aclose()
        message = await server.wait_for_message()
    assert not message.accepted
    assert message.reply is not None and message.reply.code == 451


async def test_respond_on_bdat_still_reads_the_chunk() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("BDAT", Respond(451, "4.3.0 chunk refused"), times=1)
        client = await _connect(server)
        await client.command(b"MAIL FROM:<a@example.org>\r\n")
        await client.command(b"RCPT TO:<b@example.org>\r\n")
        assert (await client.command(b"BDAT 6\r\nNOOP\r\n")).code == 451
        # The chunk was consumed, not taken for a command: the next reply is to this NOOP.
        assert (await client.command(b"NOOP\r\n")).code == 250
        await client.aclose()


async def test_early_reply_on_bdat_comes_before_the_chunk_is_read() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("BDAT", EarlyReply(552, "5.3.4 no thanks", hold=0))
        client = await _connect(server)
        await client.command(b"MAIL FROM:<a@example.org>\r\n")
        await client.command(b"RCPT TO:<b@example.org>\r\n")
        assert (await client.command(b"BDAT 1000000 LAST\r\n")).code == 552
        assert await client.read_until_closed() == b""
        await client.aclose()


async def test_delay_then_respond_compose(autojump_clock: trio.testing.MockClock) -> None:
    async with SmtpServer(tls="none") as server:
        server.on("RCPT", Delay(60, then=Drip(0, then=Respond(452, "4.2.2 mailbox full"))))
        client = await _connect(server)
        await client.command(b"MAIL FROM:<a@example.org>\r\n")
        start = trio.current_time()
        reply = await client.command(b"RCPT TO:<b@example.org>\r\n")
        assert (reply.code, reply.text) == (452, "4.2.2 mailbox full")
        assert trio.current_time() - start >= 60
        await client.aclose()


async def test_match_predicate_and_removal() -> None:
    async with SmtpServer(tls="none") as server:
        fault = server.on("VRFY", Respond(550, "no"), match=lambda arg: arg.startswith("x"))
        client = await _connect(server)
        assert (await client.command(b"VRFY xavier\r\n")).code == 550
        assert (await client.command(b"VRFY yves\r\n")).code == 252
        server.remove_fault(fault)
        assert (await client.command(b"VRFY xavier\r\n")).code == 252
        await client.aclose()
    assert fault.hits == 1


async def test_a_huge_line_is_refused_without_being_kept() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server)
        await client.send(b"NOOP ")
        for _ in range(64):  # 4 MiB without a line end
            await client.send(b"a" * 65536)
        assert (await client.command(b"\r\n")).code == 500
        assert (await client.command(b"NOOP\r\n")).code == 250
        await client.aclose()
    assert server.connections[0].commands[1].raw == b""  # nothing of it was kept
