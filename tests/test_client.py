"""SmtpClient against the testing server: sending, reuse, TLS modes and AUTH."""

from __future__ import annotations

import ssl
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
    SmtpError,
    SmtpStatusCode,
    SmtpTlsError,
)
from trio_smtp.sasl._mechanisms import Login
from trio_smtp.testing import Handover, Inject, Respond, Shutdown, SmtpServer

MakeMessage = Callable[..., EmailMessage]
ClientFactory = Callable[..., SmtpClient]
CREDS = ("user", "password")


async def test_send_over_starttls_with_auth(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    msg = make_message("a@example.net", Cc="b@example.net", Message_ID="<m1@example.org>")
    msg["Bcc"] = "hidden@example.net"
    async with smtp_client_factory(credentials=CREDS) as client:
        result = await client.send(msg)
    assert result.accepted == ("a@example.net", "b@example.net", "hidden@example.net")
    assert result.rejected == {}
    assert result.reply is not None and result.reply.code == 250
    assert result.message_id == "<m1@example.org>"
    received = smtp_server.messages[0]
    assert received.sender == "sender@example.org"
    assert received.recipients == ["a@example.net", "b@example.net", "hidden@example.net"]
    assert b"hidden@example.net" not in received.data
    assert received.as_email()["Subject"] == "test"
    conn = smtp_server.connections[0]
    assert conn.tls_version is not None
    assert conn.auth_identity == "user"
    # RFC 3207 §4.2: EHLO again after TLS; QUIT on leaving the block.
    assert conn.verbs[:3] == ["EHLO", "STARTTLS", "EHLO"]
    assert conn.verbs[-1] == "QUIT"
    assert msg["Bcc"] == "hidden@example.net"  # the caller's message is untouched


async def test_connection_reused_then_quit_once(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory() as client:
        for n in range(3):
            await client.send(make_message(f"r{n}@example.net"))
    assert len(smtp_server.connections) == 1
    assert len(smtp_server.messages) == 3
    assert smtp_server.connections[0].verbs.count("QUIT") == 1
    assert smtp_server.connections[0].close_reason == "quit"


async def test_bytes_with_explicit_envelope(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory
) -> None:
    raw = b"Subject: raw\r\n\r\n.leading dot\r\nbare lf\nend"
    async with smtp_client_factory() as client:
        result = await client.send(raw, sender="s@example.org", recipients=["r@example.net"])
    assert result.accepted == ("r@example.net",)
    assert smtp_server.messages[0].data == b"Subject: raw\r\n\r\n.leading dot\r\nbare lf\r\nend\r\n"


@pytest.mark.smtp_server(disable={"PIPELINING"})
async def test_without_pipelining(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory() as client:
        await client.send(make_message("a@example.net, b@example.net"))
    assert smtp_server.messages[0].recipients == ["a@example.net", "b@example.net"]


@pytest.mark.smtp_server(tls="implicit")
async def test_implicit_tls(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory(credentials=CREDS) as client:
        await client.send(make_message())
    assert smtp_server.connections[0].verbs[0] == "EHLO"
    assert smtp_server.connections[0].tls_version is not None


@pytest.mark.smtp_server(tls="none")
async def test_plaintext_and_credentials_allowed_on_loopback(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    client = SmtpClient(
        smtp_server.host, smtp_server.port, security=Security.NONE, credentials=CREDS
    )
    async with client:
        await client.send(make_message())
    assert smtp_server.connections[0].auth_identity == "user"


@pytest.mark.smtp_server(tls="none")
async def test_starttls_required_but_not_advertised(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    client = SmtpClient(smtp_server.host, smtp_server.port, credentials=CREDS)
    async with client:
        with pytest.raises(SmtpTlsError, match="not advertise"):
            await client.send(make_message())
    verbs = smtp_server.connections[0].verbs
    assert "AUTH" not in verbs and "MAIL" not in verbs


@pytest.mark.smtp_server(tls="none")
async def test_opportunistic_goes_plaintext_when_not_offered(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    client = SmtpClient(
        smtp_server.host, smtp_server.port, security=Security.STARTTLS_OPPORTUNISTIC
    )
    async with client:
        await client.send(make_message())
    assert len(smtp_server.messages) == 1


async def test_starttls_refused(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    smtp_server.on("STARTTLS", Respond(454, "4.7.0 TLS not available"))
    async with smtp_client_factory(credentials=CREDS) as client:
        with pytest.raises(SmtpTlsError) as info:
            await client.send(make_message())
    assert info.value.reply is not None and info.value.reply.code == 454
    assert "AUTH" not in smtp_server.connections[0].verbs


async def test_bytes_injected_after_starttls_220(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    # RFC 3207 §6: a reply pipelined with the 220 must never be taken as coming from TLS.
    smtp_server.on("STARTTLS", Inject(b"250-injected\r\n250 AUTH PLAIN\r\n"))
    async with smtp_client_factory(credentials=CREDS) as client:
        with pytest.raises(SmtpTlsError):
            await client.send(make_message())
    verbs = smtp_server.connections[0].verbs
    assert "AUTH" not in verbs and "MAIL" not in verbs


async def test_certificate_verified_by_default(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    client = SmtpClient(smtp_server.host, smtp_server.port)  # system CAs only
    async with client:
        with pytest.raises(SmtpTlsError) as info:
            await client.send(make_message())
    assert isinstance(info.value.__cause__, (ssl.SSLError, trio.BrokenResourceError))
    assert "MAIL" not in smtp_server.connections[0].verbs


async def test_auth_failure_carries_reply(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory(credentials=("user", "wrong")) as client:
        with pytest.raises(SmtpAuthenticationError) as info:
            await client.send(make_message())
    assert info.value.reply is not None and info.value.reply.code == 535
    assert info.value.status_code is SmtpStatusCode.AUTHENTICATION_FAILED
    assert smtp_server.messages == []


@pytest.mark.smtp_server(auth_mechanisms=("LOGIN", "PLAIN"))
async def test_strongest_offered_mechanism_chosen(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory(credentials=CREDS) as client:
        await client.send(make_message())
    assert smtp_server.connections[0].auth_mechanism == "PLAIN"


async def test_forced_mechanism_object_used_on_every_connection(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory(credentials=Login("user", "password")) as client:
        await client.send(make_message())
        smtp_server.on("MAIL", Shutdown(), times=1)  # forces a second connection
        await client.send(make_message())
    assert [c.auth_mechanism for c in smtp_server.connections] == ["LOGIN", "LOGIN"]


async def test_malformed_challenge_cancelled_with_star(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    answers: list[bytes] = []

    async def bad_challenge(stream: trio.abc.Stream, pending: bytes) -> None:
        await stream.send_all(b"334 %%% not base64 %%%\r\n")
        answers.append(bytes(await stream.receive_some(1000)))
        await stream.send_all(b"501 5.7.0 cancelled\r\n")
        await stream.receive_some(1000)  # until the client closes

    smtp_server.on("AUTH", Handover(bad_challenge))
    async with smtp_client_factory(credentials=("user", "password")) as client:
        with pytest.raises(SmtpAuthenticationError, match="cancelled") as info:
            await client.send(make_message())
    assert answers == [b"*\r\n"]  # RFC 4954 §4: "*" cancels the exchange
    assert info.value.reply is not None and info.value.reply.code == 501


async def test_credentials_never_sent_in_clear_to_non_loopback(
    make_message: MakeMessage,
) -> None:
    # A memory stream is not loopback: the client must refuse before writing anything.
    server = SmtpServer(tls="none", credentials={"user": "password"})
    client_end, server_end = trio.testing.memory_stream_pair()

    async def factory() -> trio.abc.Stream:
        return client_end

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_stream, server_end)
        client = SmtpClient(
            "mx.example.net", security=Security.NONE, credentials=CREDS, stream_factory=factory
        )
        async with client:
            with pytest.raises(SmtpAuthenticationError, match="without TLS"):
                await client.send(make_message())
    assert server.connections[0].commands == []


async def test_greeting_421_is_connect_error(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    smtp_server.on("GREETING", Shutdown(), times=1)
    async with smtp_client_factory() as client:
        with pytest.raises(SmtpConnectError) as info:
            await client.send(make_message())
        assert info.value.reply is not None and info.value.reply.code == 421
        assert info.value.is_transient
        await client.send(make_message())  # the next send connects again
    assert len(smtp_server.messages) == 1


@pytest.mark.smtp_server(tls="none")
async def test_ehlo_refused_falls_back_to_helo(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    smtp_server.on("EHLO", Respond(502, "5.5.1 EHLO not implemented"))
    async with SmtpClient(smtp_server.host, smtp_server.port, security=Security.NONE) as client:
        await client.send(make_message())
    assert smtp_server.connections[0].verbs[:2] == ["EHLO", "HELO"]
    assert len(smtp_server.messages) == 1


async def test_connect_refused_is_connect_error(make_message: MakeMessage) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens there any more
    async with SmtpClient("127.0.0.1", port, security=Security.NONE) as client:
        with pytest.raises(SmtpConnectError) as info:
            await client.send(make_message())
    assert isinstance(info.value, ConnectionError)
    assert info.value.status_code is SmtpStatusCode.GENERAL_FAILURE


@pytest.mark.smtp_server(max_message_size=200)
async def test_size_limit_checked_before_mail(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory() as client:
        with pytest.raises(SmtpError) as info:
            await client.send(make_message(body="x" * 500 + "\n"))
        assert info.value.status_code is SmtpStatusCode.EXCEEDED_STORAGE_ALLOCATION
        await client.send(make_message())  # the session is still good
    assert "MAIL" in smtp_server.connections[0].verbs
    assert len(smtp_server.connections) == 1
    assert smtp_server.messages[0].mail_params.get("SIZE") is not None


async def test_smtputf8_and_8bitmime_parameters(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    msg = make_message("jösé@example.net")
    msg.set_content("Grüße\n", cte="8bit")
    async with smtp_client_factory() as client:
        await client.send(msg)
    params = smtp_server.messages[0].mail_params
    assert "SMTPUTF8" in params
    assert params.get("BODY") == "8BITMIME"
    assert smtp_server.messages[0].recipients == ["jösé@example.net"]


@pytest.mark.smtp_server(disable={"SMTPUTF8"})
async def test_smtputf8_refused_locally_when_not_offered(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory() as client:
        with pytest.raises(SmtpError, match="SMTPUTF8"):
            await client.send(make_message("jösé@example.net"))
    assert "MAIL" not in smtp_server.connections[0].verbs


@pytest.mark.parametrize(
    ("to", "part"),
    [
        ("ok@example.net;x@example.net", "ok@example.net;x@example.net"),
        ("b@@example.net, ok@example.net", "b@@example.net"),
        ("foo, ok@example.net", "foo"),
    ],
)
async def test_recipient_list_that_does_not_all_parse_sends_to_nobody(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, to: str, part: str
) -> None:
    # The stdlib yields only ok@example.net and records a defect: sending would reach a
    # subset of the list in silence (design rule 13).
    message = EmailMessage()
    message["From"] = "a@example.org"
    message["To"] = to
    message.set_content("x\n")
    async with smtp_client_factory() as client:
        with pytest.raises(ValueError, match="To") as info:
            await client.send(message)
        with pytest.raises(ValueError):
            await client.send(b"x\r\n", sender="a@example.org", recipients=[*to.split(", "), ""])
    assert repr(part) in str(info.value)
    assert smtp_server.connections == []  # nothing was written, not even EHLO


@pytest.mark.smtp_server(tls="none")
async def test_each_message_on_a_kept_connection_gets_its_own_envelope_commands(
    smtp_server: SmtpServer,
) -> None:
    """A connection keeps the last message's MAIL and RCPTs for the next one (a CPU
    saving): whatever differs -- recipients, size, body kind, DSN options -- gets its own."""
    from trio_smtp import DeliveryNotification

    def raw(body: bytes) -> bytes:
        return b"From: <s@example.org>\r\nSubject: t\r\n\r\n" + body + b"\r\n"

    sends: list[tuple[bytes, list[str], DeliveryNotification | None]] = [
        (raw(b"one"), ["a@example.net"], None),
        (raw(b"two"), ["a@example.net"], None),  # the same commands again
        (raw(b"two"), ["b@example.net", "a@example.net"], None),
        (raw(b"longer body"), ["b@example.net", "a@example.net"], None),
        (raw("é".encode()), ["b@example.net", "a@example.net"], None),
        (raw(b"one"), ["a@example.net"], DeliveryNotification.NEVER),
        (raw(b"one"), ["a@example.net"], None),
    ]
    async with SmtpClient(smtp_server.host, smtp_server.port, security=Security.NONE) as client:
        for data, recipients, notify in sends:
            await client.send(data, sender="s@example.org", recipients=recipients, notify=notify)
    assert len(smtp_server.connections) == 1
    got = [
        (m.recipients, m.mail_params.get("SIZE"), m.mail_params.get("BODY"), m.rcpt_params)
        for m in smtp_server.messages
    ]
    a, ba = ["a@example.net"], ["b@example.net", "a@example.net"]
    sizes = [str(len(data)) for data, _, _ in sends]
    plain: dict[str, dict[str, str | None]] = {"a@example.net": {}}
    assert got == [
        (a, sizes[0], None, plain),
        (a, sizes[1], None, plain),
        (ba, sizes[2], None, {"b@example.net": {}, "a@example.net": {}}),
        (ba, sizes[3], None, {"b@example.net": {}, "a@example.net": {}}),
        (ba, sizes[4], "8BITMIME", {"b@example.net": {}, "a@example.net": {}}),
        (a, sizes[5], None, {"a@example.net": {"NOTIFY": "NEVER"}}),
        (a, sizes[6], None, plain),
    ]
