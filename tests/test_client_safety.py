"""The client stays safe against hostile or broken servers on loopback: bounded replies,
STARTTLS in every mode, credentials never in clear to a non-loopback peer, and every failure
mid-command followed by a NEW connection.
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

import pytest
import trio
import trio.testing

from trio_smtp import (
    Security,
    SmtpAuthenticationError,
    SmtpClient,
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpProtocolError,
    SmtpTlsError,
)
from trio_smtp.testing import Handover, Hangup, Inject, Respond, SmtpServer

MakeMessage = Callable[..., EmailMessage]
ClientFactory = Callable[..., SmtpClient]
CREDS = ("user", "password")

#: Far above every reply limit of the client (4 KiB lines, 64 KiB replies): a client that
#: kept reading would take this long to fail, so the bound shows it stopped early.
_FLOOD_LIMIT = 50 * 1024 * 1024


def _flood(unit: bytes, head: bytes = b"") -> tuple[Callable[..., object], list[int]]:
    """A Handover that writes ``head`` then ``unit`` for ever (until the client hangs up or
    ``_FLOOD_LIMIT`` octets went out); ``written[0]`` counts the octets."""
    written = [0]

    async def handler(stream: trio.abc.Stream, pending: bytes) -> None:
        block = unit * max(1, 65536 // len(unit))
        try:
            await stream.send_all(head)
            while written[0] < _FLOOD_LIMIT:
                await stream.send_all(block)
                written[0] += len(block)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client closed: what we want

    return handler, written


@pytest.mark.parametrize(
    ("unit", "head"),
    [(b"x", b"250 "), (b"250-more\r\n", b""), (b"250-" + b"y" * 4000 + b"\r\n", b"")],
    ids=["endless-line", "endless-multiline", "endless-long-lines"],
)
async def test_endless_reply_is_a_protocol_error_and_bounded(
    make_message: MakeMessage, unit: bytes, head: bytes
) -> None:
    async with SmtpServer(tls="none") as server:
        handler, written = _flood(unit, head)
        server.on("EHLO", Handover(handler), times=1)  # type: ignore[arg-type]
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            with trio.fail_after(30), pytest.raises(SmtpProtocolError):
                await client.send(make_message())
            await client.send(make_message())  # a new connection
        assert written[0] < _FLOOD_LIMIT  # the client hung up instead of reading on
        assert len(server.connections) == 2
        assert "MAIL" not in server.connections[0].verbs


async def test_endless_reply_to_the_end_of_data_is_a_protocol_error_not_unknown(
    make_message: MakeMessage,
) -> None:
    # The server answered (garbage): the outcome is a broken protocol, reported as such.
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        handler, written = _flood(b"z")
        server.on("DATA", Handover(handler), times=1)  # type: ignore[arg-type]
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            with trio.fail_after(30), pytest.raises(SmtpError) as info:
                await client.send(make_message())
            assert isinstance(info.value, SmtpProtocolError)
        assert written[0] < _FLOOD_LIMIT


# -- STARTTLS in every mode ----------------------------------------------------------------------


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.STARTTLS_OPPORTUNISTIC])
async def test_injection_after_220_aborts_in_both_starttls_modes(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    security: Security,
) -> None:
    # RFC 3207 §5: opportunistic must not fall back to plaintext after an injection either.
    smtp_server.on("STARTTLS", Inject(b"250 AUTH PLAIN\r\n"))
    async with smtp_client_factory(credentials=CREDS, security=security) as client:
        with pytest.raises(SmtpTlsError):
            await client.send(make_message())
    for conn in smtp_server.connections:
        assert "AUTH" not in conn.verbs and "MAIL" not in conn.verbs


async def test_starttls_required_answered_250_is_a_tls_error(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async def yes_but_no(stream: trio.abc.Stream, pending: bytes) -> None:
        await stream.send_all(b"250 2.0.0 sure\r\n")
        with trio.move_on_after(10):
            await stream.receive_some(65536)  # whatever comes next must not be AUTH

    smtp_server.on("STARTTLS", Handover(yes_but_no), times=1)
    async with smtp_client_factory(credentials=CREDS) as client:
        with pytest.raises(SmtpTlsError) as info:
            await client.send(make_message())
        assert info.value.reply is not None and info.value.reply.code == 250
    assert smtp_server.connections[0].verbs == ["EHLO", "STARTTLS"]


async def _serve_over_memory(
    server: SmtpServer,
    client_kwargs: dict[str, object],
    message: EmailMessage,
    host: str = "mx.example.net",
) -> BaseException | None:
    """Run ``server`` over a memory stream (not loopback for the client) and send once."""
    client_end, server_end = trio.testing.memory_stream_pair()

    async def factory() -> trio.abc.Stream:
        return client_end

    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_stream, server_end)
        client = SmtpClient(host, stream_factory=factory, **client_kwargs)  # type: ignore[arg-type]
        async with client:
            try:
                await client.send(message)
            except SmtpError as exc:
                error = exc
    return error


@pytest.mark.parametrize(
    "fault", [None, Respond(454, "4.7.0 TLS not available")], ids=["not-offered", "refused"]
)
async def test_opportunistic_without_tls_never_sends_credentials_to_non_loopback(
    make_message: MakeMessage, fault: Respond | None
) -> None:
    server = SmtpServer(tls="none" if fault is None else "starttls", credentials={"user": "pw"})
    if fault is not None:
        server.on("STARTTLS", fault)
    error = await _serve_over_memory(
        server,
        {"security": Security.STARTTLS_OPPORTUNISTIC, "credentials": ("user", "pw")},
        make_message(),
    )
    assert isinstance(error, SmtpAuthenticationError)
    verbs = server.connections[0].verbs
    assert "AUTH" not in verbs and "MAIL" not in verbs
    assert all(b"pw" not in c.raw for c in server.connections[0].commands)


async def test_credentials_go_to_non_loopback_once_tls_is_up(make_message: MakeMessage) -> None:
    # The counterpart of the refusals: over TLS, a non-loopback peer does get AUTH.
    server = SmtpServer(credentials={"user": "pw"})
    error = await _serve_over_memory(
        server,
        {
            "security": Security.STARTTLS,
            "credentials": ("user", "pw"),
            "ssl_context": server.ssl_context,
        },
        make_message(),
        host="localhost",  # the name on the server's certificate; the peer is a memory stream
    )
    assert error is None
    assert server.connections[0].auth_identity == "user"


# -- a failure mid-command: the next send uses a NEW connection, no stale reply ---------------

MID_COMMAND = [
    ("data", "EHLO"),
    ("data", "MAIL"),
    ("data", "RCPT"),
    ("data", "DATA"),
    ("data", "RSET"),
    ("bdat", "EHLO"),
    ("bdat", "MAIL"),
    ("bdat", "RCPT"),
    ("bdat", "RSET"),
]


@pytest.mark.parametrize(("transfer", "verb"), MID_COMMAND)
async def test_hangup_mid_command_then_fresh_connection_and_no_stale_reply(
    make_message: MakeMessage, transfer: str, verb: str
) -> None:
    disable = set() if transfer == "bdat" else {"CHUNKING"}
    # With BDAT the small message goes in one write with MAIL and RCPT (``BDAT n LAST``):
    # once MAIL's reply is in, a hang-up may follow a delivery (see test_client_one_outcome.py).
    maybe_delivered = transfer == "bdat" and verb in ("MAIL", "RCPT")
    async with SmtpServer(tls="none", disable=disable) as server:
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            if verb == "RSET":
                # RSET follows a refused transaction; the hang-up then breaks the session.
                server.on("MAIL", Respond(550, "5.7.1 no"), times=1)
            server.on(verb, Hangup(), times=1)
            with pytest.raises(SmtpError) as info:
                await client.send(make_message(X_Try="first"))
            if not maybe_delivered:  # before the end of the data nothing can be delivered
                assert not isinstance(info.value, SmtpDeliveryUnknownError)
            result = await client.send(make_message(X_Try="second"))
            assert result.reply is not None and result.reply.code == 250
        assert len(server.connections) == 2
        assert [m.headers["X-Try"] for m in server.messages if m.accepted] == ["second"]
        assert all(m.connection is server.connections[1] for m in server.messages)


async def test_connect_error_is_a_connection_error(make_message: MakeMessage) -> None:
    # Failure table: "connection to the server failed" -> SmtpConnectError, also ConnectionError.
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    async with SmtpClient("127.0.0.1", port, security=Security.NONE) as client:
        with pytest.raises(SmtpConnectError) as info:
            await client.send(make_message())
    assert isinstance(info.value, ConnectionError)
