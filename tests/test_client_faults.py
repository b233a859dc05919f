"""SmtpClient against a misbehaving server: refusals, 421, lost connections, deadlines and
cancellation at each phase of a transaction."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
import trio

from trio_smtp import (
    Security,
    SmtpAuthenticationError,
    SmtpClient,
    SmtpDeliveryUnknownError,
    SmtpFailedRecipientsError,
    SmtpProtocolError,
    SmtpResponseError,
    SmtpTimeoutError,
    Timeouts,
)
from trio_smtp.sasl._mechanisms import Login
from trio_smtp.testing import (
    Delay,
    EarlyReply,
    Handover,
    Hangup,
    Inject,
    Respond,
    Shutdown,
    SmtpServer,
)

MakeMessage = Callable[..., EmailMessage]
ClientFactory = Callable[..., SmtpClient]


@pytest.fixture(params=[(), ("PIPELINING",)], ids=["pipelining", "one-by-one"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[SmtpServer]:
    """A plaintext testing server, with and without PIPELINING (both code paths), without
    CHUNKING: these tests are about DATA (BDAT has tests/test_client_bdat.py)."""
    async with SmtpServer(tls="none", disable={"CHUNKING", *request.param}) as srv:
        yield srv


def client_for(server: SmtpServer, timeouts: Timeouts | None = None) -> SmtpClient:
    return SmtpClient(server.host, server.port, security=Security.NONE, timeouts=timeouts)


async def test_mail_refused_then_rset_and_reuse(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("MAIL", Respond(550, "5.7.1 sender refused"), times=1)
    async with client_for(server) as client:
        with pytest.raises(SmtpResponseError) as info:
            await client.send(make_message())
        assert info.value.reply is not None and info.value.reply.code == 550
        assert not info.value.is_transient
        await client.send(make_message())
    assert len(server.connections) == 1
    assert "RSET" in server.connections[0].verbs
    assert len(server.messages) == 1


async def test_partial_refusal_delivers_to_the_others(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("RCPT", Respond(550, "5.1.1 no such user"), match="bad@example.net")
    msg = make_message("good@example.net, bad@example.net, other@example.net")
    async with client_for(server) as client:
        with pytest.raises(SmtpFailedRecipientsError) as info:
            await client.send(msg)
        await client.send(make_message())  # same connection, still usable
    error = info.value
    assert [f.recipient for f in error.failures] == ["bad@example.net"]
    assert error.failures[0].reply is not None and error.failures[0].reply.code == 550
    assert error.result is not None
    assert error.result.accepted == ("good@example.net", "other@example.net")
    assert set(error.result.rejected) == {"bad@example.net"}
    assert server.messages[0].recipients == ["good@example.net", "other@example.net"]
    assert len(server.connections) == 1


async def test_all_refused_sends_no_body(server: SmtpServer, make_message: MakeMessage) -> None:
    server.on("RCPT", Respond(550, "5.1.1 no such user"))
    async with client_for(server) as client:
        with pytest.raises(SmtpFailedRecipientsError) as info:
            await client.send(make_message("a@example.net, b@example.net"))
        assert info.value.result is None
        assert len(info.value.failures) == 2
        server.clear_faults()
        await client.send(make_message())
    assert len(server.messages) == 1  # only the second message
    assert len(server.connections) == 1


async def test_all_refused_but_pipelined_data_got_354_sends_only_terminator(
    make_message: MakeMessage,
) -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("RCPT", Respond(550, "5.1.1 no such user"))
        server.on("DATA", Respond(354, "go ahead anyway"))
        async with client_for(server) as client:
            with pytest.raises(SmtpFailedRecipientsError):
                await client.send(make_message(body="SECRET BODY\n"))
    seen = [c.raw for conn in server.connections for c in conn.commands]
    assert seen[seen.index(b"DATA\r\n") + 1] == b".\r\n"  # only the terminator followed
    assert not any(b"SECRET BODY" in raw for raw in seen)
    assert not any(b"SECRET BODY" in message.data for message in server.messages)


async def test_data_refused(server: SmtpServer, make_message: MakeMessage) -> None:
    server.on("DATA", Respond(554, "5.3.0 no data today"), times=1)
    async with client_for(server) as client:
        with pytest.raises(SmtpResponseError) as info:
            await client.send(make_message())
        assert info.value.reply is not None and info.value.reply.code == 554
        await client.send(make_message())
    assert "RSET" in server.connections[0].verbs
    assert len(server.messages) == 1


async def test_end_of_data_refused(server: SmtpServer, make_message: MakeMessage) -> None:
    server.on("END_OF_DATA", Respond(552, "5.3.4 too big"), times=1)
    async with client_for(server) as client:
        with pytest.raises(SmtpResponseError) as info:
            await client.send(make_message())
        assert info.value.reply is not None and info.value.reply.code == 552
        await client.send(make_message())
    assert len(server.connections) == 1


@pytest.mark.parametrize("size", [100, 4_000_000], ids=["small", "large"])
async def test_early_reply_during_data_reported_with_its_code(
    make_message: MakeMessage, size: int
) -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}, max_message_size=50_000_000) as server:
        server.on("DATA", EarlyReply(554, "5.3.0 go away", hold=5), times=1)
        async with client_for(server) as client:
            with pytest.raises(SmtpResponseError) as info:
                await client.send(make_message(body="y" * size + "\n"))
            assert info.value.reply is not None and info.value.reply.code == 554
            await client.send(make_message())  # a new connection
        assert len(server.connections) == 2
        assert [m.accepted for m in server.messages] == [True]


async def test_421_mid_transaction_closes_and_next_send_reconnects(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("RCPT", Shutdown(), times=1)
    async with client_for(server) as client:
        with pytest.raises(SmtpResponseError) as info:
            await client.send(make_message())
        assert info.value.reply is not None and info.value.reply.code == 421
        assert info.value.is_transient
        await client.send(make_message())
    assert len(server.connections) == 2
    assert len(server.messages) == 1


async def test_stale_reused_connection_is_replaced_transparently(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    async with client_for(server) as client:
        await client.send(make_message())
        server.on("MAIL", Hangup(), times=1)  # as if the server timed out the idle session
        await client.send(make_message())
    assert len(server.connections) == 2
    assert len(server.messages) == 2


async def test_connection_lost_after_terminator_is_delivery_unknown(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("END_OF_DATA", Hangup(), times=1)
    async with client_for(server) as client:
        with pytest.raises(SmtpDeliveryUnknownError) as info:
            await client.send(make_message())
        assert not info.value.is_transient  # never retried as if nothing happened
        await client.send(make_message())
    assert len(server.connections) == 2


async def test_connection_lost_before_terminator_is_not_delivery_unknown(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("RCPT", Hangup(), times=1)
    async with client_for(server) as client:
        with pytest.raises(Exception) as info:
            await client.send(make_message())
    assert not isinstance(info.value, SmtpDeliveryUnknownError)
    assert isinstance(info.value, ConnectionError)


async def test_garbage_reply_is_protocol_error_and_connection_dropped(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("MAIL", Inject(b"garbage without a code\r\n", then=Respond(250, "ok")), times=1)
    async with client_for(server) as client:
        with pytest.raises(SmtpProtocolError):
            await client.send(make_message())
        await client.send(make_message())
    assert len(server.connections) == 2


PHASES = ["GREETING", "EHLO", "MAIL", "RCPT", "DATA", "END_OF_DATA"]


@pytest.mark.parametrize("phase", PHASES)
async def test_deadline_at_each_phase(
    autojump_clock: trio.testing.MockClock, phase: str, make_message: MakeMessage
) -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on(phase, Delay(10_000), times=1)
        async with client_for(server, timeouts=Timeouts()) as client:
            with pytest.raises(SmtpTimeoutError) as info:
                await client.send(make_message())
            assert isinstance(info.value, TimeoutError)
            # After the end of data the server has the message: maybe delivered, never
            # retried silently (SmtpDeliveryTimeoutError); before it, a plain timeout.
            maybe_delivered = phase == "END_OF_DATA"
            assert isinstance(info.value, SmtpDeliveryUnknownError) is maybe_delivered
            assert info.value.is_transient is not maybe_delivered
            await client.send(make_message())  # never reuses the timed-out session
        assert len(server.connections) == 2
        assert server.messages[-1].accepted


@pytest.mark.parametrize("phase", PHASES)
async def test_user_cancel_scope_at_each_phase_closes_connection(
    autojump_clock: trio.testing.MockClock, phase: str, make_message: MakeMessage
) -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on(phase, Delay(100), times=1)
        async with client_for(server) as client:
            with trio.move_on_after(10) as scope:
                await client.send(make_message())
            assert scope.cancelled_caught
            await client.send(make_message())
        assert len(server.connections) == 2
        first = server.connections[0]
        assert "QUIT" not in first.verbs
        if phase != "END_OF_DATA":
            assert all(m.connection is not first for m in server.messages)


async def test_server_that_stops_reading_data_hits_the_data_block_deadline(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage
) -> None:
    async def stop_reading(stream: trio.abc.Stream, pending: bytes) -> None:
        await stream.send_all(b"354 go ahead\r\n")
        await trio.sleep_forever()

    async with SmtpServer(tls="none", disable={"CHUNKING"}, max_message_size=100_000_000) as server:
        server.on("DATA", Handover(stop_reading), times=1)
        async with client_for(server, Timeouts(data_block=60)) as client:
            with pytest.raises(SmtpTimeoutError, match="message data"):
                await client.send(make_message(body=("q" * 70 + "\n") * 300_000))
            await client.send(make_message())
        assert len(server.connections) == 2


async def test_endless_auth_challenges_are_capped(make_message: MakeMessage) -> None:
    lines: list[bytes] = []

    async def endless(stream: trio.abc.Stream, pending: bytes) -> None:
        for _ in range(50):
            await stream.send_all(b"334 VXNlcm5hbWU6\r\n")  # "Username:", again and again
            data = bytes(await stream.receive_some(1000))
            lines.append(data)
            if data == b"*\r\n":
                await stream.send_all(b"501 5.7.0 cancelled\r\n")
                break
        await stream.receive_some(1000)

    async with SmtpServer(
        tls="none", disable={"CHUNKING"}, credentials={"user": "password"}
    ) as server:
        server.on("AUTH", Handover(endless))
        client = SmtpClient(
            server.host,
            server.port,
            security=Security.NONE,
            credentials=Login("user", "password"),
        )
        async with client:
            with pytest.raises(SmtpAuthenticationError, match="cancelled"):
                await client.send(make_message())
    assert lines[-1] == b"*\r\n"
    assert len(lines) <= Login.max_rounds + 1


async def test_credentials_allowed_over_a_unix_socket(
    tmp_path: Path, make_message: MakeMessage
) -> None:
    path = str(tmp_path / "smtp.sock")
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(path)
    listener.listen(1)
    server = SmtpServer(tls="none", disable={"CHUNKING"}, credentials={"user": "password"})

    async def serve_one() -> None:
        sock, _ = await listener.accept()
        await server.serve_stream(trio.SocketStream(sock))

    async def connect() -> trio.abc.Stream:
        return await trio.open_unix_socket(path)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_one)
        client = SmtpClient(
            "localhost",
            security=Security.NONE,
            credentials=("user", "password"),
            stream_factory=connect,
        )
        async with client:
            await client.send(make_message())
    listener.close()
    assert server.connections[0].auth_identity == "user"
    assert len(server.messages) == 1
