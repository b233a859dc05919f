"""Exactly one outcome per send: one event per send_async on every path (a cancel in each
session phase, while connecting, mid-handshake), and SmtpDeliveryUnknownError exactly when
the connection broke after the end of the data.

Each test runs a real server on loopback (the testing server, or a raw Trio listener where a
script is simpler) and checks what the server saw, not only what the client raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage

import pytest
import trio
import trio.testing
from helpers.streams import ForwardingStream

from trio_smtp import (
    Security,
    SendCompleted,
    SmtpClient,
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpResponseError,
    Timeouts,
)
from trio_smtp.testing import Delay, Handover, Respond, SmtpServer

MakeMessage = Callable[..., EmailMessage]
ClientFactory = Callable[..., SmtpClient]
CREDS = ("user", "password")
FROM = "a@example.org"
TO = ["b@example.net"]


async def _no_more_events(client: SmtpClient) -> None:
    """Let every task run, then check that no second event came."""
    await trio.testing.wait_all_tasks_blocked()
    assert client.completed.statistics().current_buffer_used == 0


async def _until(predicate: Callable[[], bool]) -> None:
    """Poll: the testing server's ``wait_for`` is re-checked only when it records a
    connection, a message or a close, not on each command."""
    with trio.fail_after(20):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on, see above
            await trio.sleep(0.005)


async def _stall_handshake(stream: trio.abc.Stream, pending: bytes) -> None:
    # Say yes to STARTTLS, then never speak TLS: the client is stuck in its handshake.
    await stream.send_all(b"220 2.0.0 go ahead\r\n")
    await trio.sleep_forever()


# -- exactly one event per send_async, whatever phase is cancelled ----------------------------

#: (trigger, what the server must have received before we cancel)
CANCEL_PHASES = [
    ("GREETING", None),
    ("EHLO", "EHLO"),
    ("STARTTLS", "STARTTLS"),
    ("TLS_HANDSHAKE", "STARTTLS"),
    ("AUTH", "AUTH"),
    ("MAIL", "MAIL"),
    ("RCPT", "RCPT"),
    ("DATA", "DATA"),
    ("END_OF_DATA", "DATA"),
]


@pytest.mark.parametrize(("phase", "seen"), CANCEL_PHASES, ids=[p for p, _ in CANCEL_PHASES])
@pytest.mark.smtp_server(disable={"CHUNKING"})
async def test_send_async_cancel_in_every_session_phase_reports_once_and_reconnects(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    phase: str,
    seen: str | None,
) -> None:
    if phase == "TLS_HANDSHAKE":
        smtp_server.on("STARTTLS", Handover(_stall_handshake), times=1)
    else:
        smtp_server.on(phase, Delay(3600), times=1)
    async with smtp_client_factory(credentials=CREDS) as client:
        client.send_async(make_message(), user_token=phase)
        await _until(
            lambda: (
                bool(smtp_server.connections)
                and (seen is None or seen in smtp_server.connections[0].verbs)
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        client.send_async_cancel()
        with trio.fail_after(30):
            event = await client.completed.receive()
        if phase == "END_OF_DATA":
            # Too late to stop it: the server has the message; no claim of a cancel.
            assert isinstance(event.error, SmtpDeliveryUnknownError)
            assert (event.user_token, event.cancelled, event.result) == (phase, False, None)
        else:
            assert event == SendCompleted(phase, None, True, None)
        await _no_more_events(client)
        assert not client.statistics().send_in_flight
        await client.send(make_message())  # a new connection, never the half-spoken one
    assert len(smtp_server.connections) == 2
    first = smtp_server.connections[0]
    assert "QUIT" not in first.verbs
    if phase in ("GREETING", "EHLO", "STARTTLS", "TLS_HANDSHAKE"):
        assert "AUTH" not in first.verbs
    if phase != "END_OF_DATA":
        assert [m.connection for m in smtp_server.messages] == [smtp_server.connections[1]]


async def test_send_async_cancel_while_connecting_reports_once(make_message: MakeMessage) -> None:
    connecting = trio.Event()

    async def never_connects() -> trio.abc.Stream:
        connecting.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    client = SmtpClient("mx.example.net", security=Security.NONE, stream_factory=never_connects)
    async with client:
        client.send_async(make_message(), user_token="connect")
        await connecting.wait()
        client.send_async_cancel()
        with trio.fail_after(30):
            event = await client.completed.receive()
        assert event == SendCompleted("connect", None, True, None)
        await _no_more_events(client)
    assert client.statistics().messages_failed == 0


async def test_outer_scope_cancelled_mid_tls_handshake_reports_once(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    smtp_server.on("STARTTLS", Handover(_stall_handshake), times=1)
    client = smtp_client_factory(credentials=CREDS)
    with trio.CancelScope() as outer:
        async with client:
            client.send_async(make_message(), user_token="outer")
            await _until(
                lambda: (
                    bool(smtp_server.connections) and "STARTTLS" in smtp_server.connections[0].verbs
                )
            )
            outer.cancel()
            await trio.sleep_forever()
    assert outer.cancelled_caught
    events = [event async for event in client.completed]  # ends: the client is closed
    assert events == [SendCompleted("outer", None, True, None)]
    assert "AUTH" not in smtp_server.connections[0].verbs


# -- timeouts in the session phases (issue 4: per-phase deadlines) -----------------------------


@pytest.mark.parametrize("phase", ["STARTTLS", "TLS_HANDSHAKE", "AUTH", "EHLO_AFTER_TLS"])
async def test_session_phase_deadline_is_a_timeout_and_nothing_is_reused(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage, phase: str
) -> None:
    async with SmtpServer(credentials={"user": "password"}, disable={"CHUNKING"}) as server:
        if phase == "TLS_HANDSHAKE":
            server.on("STARTTLS", Handover(_stall_handshake), times=1)
        elif phase == "EHLO_AFTER_TLS":
            # The first EHLO is answered at once; the second (inside TLS) never is.
            server.on(
                "EHLO",
                Delay(10_000),
                match=lambda _arg: bool(server.connections[0].tls_version),
                times=1,
            )
        else:
            server.on(phase, Delay(10_000), times=1)
        client = SmtpClient(
            server.host,
            server.port,
            security=Security.STARTTLS,
            ssl_context=server.ssl_context,
            credentials=CREDS,
            timeouts=Timeouts(),
        )
        async with client:
            with pytest.raises(SmtpError) as info:
                await client.send(make_message())
            assert isinstance(info.value, TimeoutError), repr(info.value)
            assert not isinstance(info.value, SmtpDeliveryUnknownError)
            await client.send(make_message())
        assert len(server.connections) == 2
        assert "MAIL" not in server.connections[0].verbs
        assert [m.connection for m in server.messages] == [server.connections[1]]


# -- SmtpDeliveryUnknownError exactly after the end of data -------------------------------------


class _FailsOnTerminator(ForwardingStream):
    """A TCP stream whose ``send_all`` fails, writing nothing, for the write that would carry
    the DATA terminator: the terminator provably never left this machine."""

    def __init__(self, inner: trio.SocketStream) -> None:
        super().__init__(inner)
        self.failed_writes = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if b"\r\n.\r\n" in bytes(data):
            self.failed_writes += 1
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("connection reset before the write")
        await self.inner.send_all(data)


@pytest.mark.parametrize("size", [100, 1_000_000], ids=["one-write", "streamed"])
async def test_terminator_write_that_fails_is_not_delivery_unknown(
    size: int, autojump_clock: trio.testing.MockClock
) -> None:
    # (autojump: after the failed write the client waits a little for the server's reason.)
    streams: list[_FailsOnTerminator] = []
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:

        async def factory() -> trio.abc.Stream:
            stream = _FailsOnTerminator(await trio.open_tcp_stream(server.host, server.port))
            streams.append(stream)
            return stream

        client = SmtpClient(server.host, security=Security.NONE, stream_factory=factory)
        body = b"Subject: x\r\n\r\n" + b"y" * size + b"\r\n"
        async with client:
            with pytest.raises(SmtpConnectError) as info:
                await client.send(body, sender=FROM, recipients=TO)
        assert streams[0].failed_writes == 1
        assert server.messages == []  # the server never got the end of the data
        assert not isinstance(info.value, SmtpDeliveryUnknownError)


async def _take_group_then_vanish(stream: trio.abc.Stream, pending: bytes) -> None:
    # RFC 2920 §3.1: a server may process a whole group (here MAIL, RCPT and BDAT n LAST:
    # the message is complete) before it sends any reply.  Read the group, then drop.
    data = pending
    with trio.move_on_after(5):
        while b"LAST\r\n" not in data:
            more = await stream.receive_some(65536)
            if not more:
                break
            data += more


@pytest.fixture
async def bdat_server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tls="none") as server:  # PIPELINING + CHUNKING
        yield server


async def test_bdat_group_lost_before_any_reply_on_reused_connection_is_not_resent(
    bdat_server: SmtpServer,
) -> None:
    async with SmtpClient(bdat_server.host, bdat_server.port, security=Security.NONE) as client:
        await client.send(b"Subject: 1\r\n\r\none\r\n", sender=FROM, recipients=TO)
        bdat_server.on("MAIL", Handover(_take_group_then_vanish), times=1)
        with pytest.raises(SmtpDeliveryUnknownError):
            await client.send(b"Subject: 2\r\n\r\ntwo\r\n", sender=FROM, recipients=TO)
    mails = sum(c.verbs.count("MAIL") for c in bdat_server.connections)
    assert mails == 2  # the second message was offered once, never again


async def test_bdat_group_lost_before_any_reply_on_fresh_connection_is_unknown(
    bdat_server: SmtpServer,
) -> None:
    bdat_server.on("MAIL", Handover(_take_group_then_vanish), times=1)
    async with SmtpClient(bdat_server.host, bdat_server.port, security=Security.NONE) as client:
        with pytest.raises(SmtpDeliveryUnknownError):
            await client.send(b"Subject: 2\r\n\r\ntwo\r\n", sender=FROM, recipients=TO)


async def test_bdat_group_refused_at_mail_is_not_delivery_unknown(
    bdat_server: SmtpServer,
) -> None:
    # The counterpart: a reply came, so the outcome is known (refused), never "unknown".
    bdat_server.on("MAIL", Respond(550, "5.7.1 no"), times=1)
    async with SmtpClient(bdat_server.host, bdat_server.port, security=Security.NONE) as client:
        with pytest.raises(SmtpResponseError) as info:
            await client.send(b"Subject: 2\r\n\r\ntwo\r\n", sender=FROM, recipients=TO)
        assert not isinstance(info.value, SmtpDeliveryUnknownError)
        await client.send(b"Subject: 3\r\n\r\nthree\r\n", sender=FROM, recipients=TO)
    assert [m.data for m in bdat_server.messages if m.accepted] == [b"Subject: 3\r\n\r\nthree\r\n"]
