"""AUTH through SmtpClient: SCRAM end to end, OAuth 2.0 tokens, long initial responses,
forced mechanisms, and every password mechanism the testing server speaks (success, refusal
with nothing sent after, no secret in the protocol log) -- each against a real server on
loopback."""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

import pytest
import scramp
import trio

from trio_smtp import OAuth2, Security, SmtpAuthenticationError, SmtpClient
from trio_smtp.sasl import ScramSha1, ScramSha256
from trio_smtp.testing import Handover, Respond, SmtpServer

MakeMessage = Callable[..., EmailMessage]
ClientFactory = Callable[..., SmtpClient]

#: Longer than a 512-octet AUTH line can carry once base64-encoded.
LONG_TOKEN = "ya29." + "A1b2C3d4" * 160


class LineReader:
    """Reads CRLF-terminated lines from a stream (for the hand-written server parts)."""

    def __init__(self, stream: trio.abc.Stream, pending: bytes = b"") -> None:
        self.stream = stream
        self.buffer = bytearray(pending)

    async def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.buffer += data
        line, _, rest = bytes(self.buffer).partition(b"\r\n")
        self.buffer = bytearray(rest)
        return line

    async def until_terminator(self) -> bytes:
        while b"\r\n.\r\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.buffer += data
        body, _, rest = bytes(self.buffer).partition(b"\r\n.\r\n")
        self.buffer = bytearray(rest)
        return body


async def finish_session(reader: LineReader, received: list[bytes]) -> None:
    """After a hand-written AUTH: a minimal server for MAIL, RCPT, DATA and QUIT (no BDAT:
    tests using it do not offer CHUNKING)."""
    replies = {b"MAIL": b"250 ok", b"RCPT": b"250 ok", b"RSET": b"250 ok"}
    while True:
        try:
            line = await reader.line()
        except EOFError:
            return
        verb = line[:4].upper()
        if verb == b"DATA":
            await reader.stream.send_all(b"354 go on\r\n")
            received.append(await reader.until_terminator())
            await reader.stream.send_all(b"250 queued\r\n")
        elif verb == b"QUIT":
            await reader.stream.send_all(b"221 bye\r\n")
            return
        else:
            await reader.stream.send_all(replies.get(verb, b"500 what?") + b"\r\n")


# -- SCRAM ----------------------------------------------------------------------------------


async def test_password_credentials_prefer_scram_sha_256(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    # The testing server offers SCRAM-SHA-256, CRAM-MD5, PLAIN, LOGIN and XOAUTH2 by default
    # and checks the client's proof; the client checks the server's signature.
    async with smtp_client_factory(credentials=("user", "password")) as client:
        await client.send(make_message())
    conn = smtp_server.connections[0]
    assert conn.auth_mechanism == "SCRAM-SHA-256"
    assert conn.auth_identity == "user"
    assert len(smtp_server.messages) == 1


async def test_scram_with_a_wrong_password_fails(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory(credentials=("user", "wrong")) as client:
        with pytest.raises(SmtpAuthenticationError) as info:
            await client.send(make_message())
    assert info.value.reply is not None and info.value.reply.code == 535
    assert "MAIL" not in smtp_server.connections[0].verbs


def scram_server(
    name: str, password: str, *, forge_signature: bool = False
) -> tuple[Callable[[trio.abc.Stream, bytes], Awaitable[None]], dict[str, object]]:
    """A Handover handler speaking SCRAM ``name`` through scramp, optionally with a forged
    server signature (which the testing server never sends), then a tiny SMTP server for
    the rest of the session.  tests/testing/test_auth_client.py drives both SCRAM mechanisms
    against the testing server itself."""
    state: dict[str, object] = {"received": []}

    async def handler(stream: trio.abc.Stream, pending: bytes) -> None:
        mechanism = scramp.ScramMechanism(name)
        info = mechanism.make_auth_info(password, iteration_count=4096)
        server = mechanism.make_server(lambda username: info)
        reader = LineReader(stream, pending)
        first = state["auth_argument"]
        assert isinstance(first, str)
        server.set_client_first(base64.b64decode(first.split()[1]).decode())
        await stream.send_all(b"334 " + base64.b64encode(server.get_server_first().encode()))
        await stream.send_all(b"\r\n")
        server.set_client_final(base64.b64decode(await reader.line()).decode())
        final = server.get_server_final().encode()
        if forge_signature:  # an impostor that does not know the password
            final = b"v=" + base64.b64encode(b"\x00" * 32)
        await stream.send_all(b"334 " + base64.b64encode(final) + b"\r\n")
        state["empty_answer"] = await reader.line()
        await stream.send_all(b"235 2.7.0 ok\r\n")
        received = state["received"]
        assert isinstance(received, list)
        await finish_session(reader, received)

    return handler, state


def capture_argument(state: dict[str, object]) -> Callable[[str], bool]:
    def match(argument: str) -> bool:
        state["auth_argument"] = argument
        return True

    return match


@pytest.mark.smtp_server(tls="none", disable={"CHUNKING"})
async def test_forced_scram_sha_1_end_to_end(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    handler, state = scram_server("SCRAM-SHA-1", "password")
    smtp_server.on("AUTH", Handover(handler), match=capture_argument(state))
    client = SmtpClient(
        smtp_server.host,
        smtp_server.port,
        security=Security.NONE,
        credentials=ScramSha1("user", "password"),
    )
    async with client:
        await client.send(make_message(body="scram one\n"))
    assert str(state["auth_argument"]).startswith("SCRAM-SHA-1 ")  # forced, not the default
    assert state["empty_answer"] == b""  # RFC 4954 §4: the proof is answered empty
    assert b"scram one" in state["received"][0]  # type: ignore[index]


@pytest.mark.smtp_server(tls="none")
async def test_forged_server_signature_stops_before_mail(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    handler, state = scram_server("SCRAM-SHA-1", "password", forge_signature=True)
    smtp_server.on("AUTH", Handover(handler), match=capture_argument(state))
    client = SmtpClient(
        smtp_server.host,
        smtp_server.port,
        security=Security.NONE,
        credentials=ScramSha1("user", "password"),
    )
    async with client:
        with pytest.raises(SmtpAuthenticationError, match=r"proof|signature") as info:
            await client.send(make_message())
    # The forged proof is refused ("*") and nothing of the message reaches the impostor.
    assert state["empty_answer"] == b"*"
    assert info.value.reply is not None
    assert state["received"] == []


async def test_one_forced_mechanism_object_serves_every_connection(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    # A SCRAM object holds per-exchange state; auth_command() restarts it, so the same
    # object authenticates the next client (or the next connection) with a fresh nonce.
    mechanism = ScramSha256("user", "password")
    for _ in range(2):
        async with smtp_client_factory(credentials=mechanism) as client:
            await client.send(make_message())
    assert [c.auth_mechanism for c in smtp_server.connections] == ["SCRAM-SHA-256"] * 2
    assert [c.auth_identity for c in smtp_server.connections] == ["user", "user"]


# -- OAuth 2.0 ------------------------------------------------------------------------------


@pytest.mark.smtp_server(credentials={"me@example.org": LONG_TOKEN})
async def test_long_xoauth2_token_goes_after_the_first_334(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    assert len(LONG_TOKEN) > 1024
    async with smtp_client_factory(credentials=OAuth2("me@example.org", LONG_TOKEN)) as client:
        await client.send(make_message())
    conn = smtp_server.connections[0]
    assert conn.auth_mechanism == "XOAUTH2"
    assert conn.auth_identity == "me@example.org"
    auth = next(c for c in conn.commands if c.verb == "AUTH")
    # RFC 4954 §4: too long for the AUTH line, so AUTH goes alone and the 334 is answered.
    assert auth.argument == "XOAUTH2"
    assert all(len(c.raw) <= 512 for c in conn.commands if c.verb)


@pytest.mark.smtp_server(credentials={"me@example.org": "fresh-token"})
async def test_token_callable_is_called_again_on_reconnect(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    tokens = ["expired-token", "fresh-token"]
    calls: list[str] = []

    async def get_token() -> str:
        await trio.lowlevel.checkpoint()
        calls.append(tokens[len(calls)])
        return calls[-1]

    async with smtp_client_factory(credentials=OAuth2("me@example.org", get_token)) as client:
        with pytest.raises(SmtpAuthenticationError, match="401") as info:
            await client.send(make_message())  # the server's JSON error is in the message
        assert info.value.reply is not None and info.value.reply.code == 535
        await client.send(make_message())  # a new connection, a new token
    assert calls == ["expired-token", "fresh-token"]
    assert [c.auth_identity for c in smtp_server.connections] == [None, "me@example.org"]
    assert len(smtp_server.messages) == 1


async def test_token_callable_failure_is_an_authentication_error(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async def broken() -> str:
        raise OSError("token endpoint unreachable")

    async with smtp_client_factory(credentials=OAuth2("me@example.org", broken)) as client:
        with pytest.raises(SmtpAuthenticationError, match="OAuth2 token") as info:
            await client.send(make_message())
    assert isinstance(info.value.__cause__, OSError)
    assert "AUTH" not in smtp_server.connections[0].verbs


@pytest.mark.smtp_server(auth_mechanisms=("PLAIN", "LOGIN"))
async def test_token_never_offered_to_a_password_mechanism(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory(credentials=OAuth2("me@example.org", "tok")) as client:
        with pytest.raises(SmtpAuthenticationError, match="OAUTHBEARER, XOAUTH2"):
            await client.send(make_message())
    assert "AUTH" not in smtp_server.connections[0].verbs


@pytest.mark.smtp_server(tls="none")
async def test_oauthbearer_preferred_with_host_and_port(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    # Checks the exact bytes of the client's message (host and port fields) on a hand-made
    # server; tests/testing/test_auth_client.py runs OAUTHBEARER against the testing server.
    smtp_server.on("EHLO", Respond(250, ["localhost", "AUTH XOAUTH2 OAUTHBEARER"]))
    seen: dict[str, object] = {"received": []}

    async def oauthbearer(stream: trio.abc.Stream, pending: bytes) -> None:
        await stream.send_all(b"235 2.7.0 ok\r\n")
        received = seen["received"]
        assert isinstance(received, list)
        await finish_session(LineReader(stream, pending), received)

    smtp_server.on("AUTH", Handover(oauthbearer), match=capture_argument(seen))
    client = SmtpClient(
        smtp_server.host,
        smtp_server.port,
        security=Security.NONE,
        credentials=OAuth2("me@example.org", "tok"),
    )
    async with client:
        await client.send(make_message())
    name, response = str(seen["auth_argument"]).split()
    assert name == "OAUTHBEARER"
    assert (
        base64.b64decode(response)
        == (
            f"n,a=me@example.org,\x01host={smtp_server.host}\x01port={smtp_server.port}"
            "\x01auth=Bearer tok\x01\x01"
        ).encode()
    )
    assert len(seen["received"]) == 1  # type: ignore[arg-type]


def test_oauth2_repr_hides_the_token() -> None:
    credentials = OAuth2("me@example.org", "secret-token")
    assert "secret-token" not in repr(credentials)
    assert "me@example.org" in repr(credentials)


def test_oauth2_checks_its_arguments() -> None:
    with pytest.raises(TypeError):
        OAuth2("me@example.org", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        OAuth2("", "tok")


# -- hostile challenges ---------------------------------------------------------------------


@pytest.mark.parametrize("count", ["²", "٣", "4096x"])
async def test_scram_unicode_digit_iteration_count_is_an_authentication_error(
    make_message: MakeMessage, count: str
) -> None:
    # str.isdigit() admits "²"; int() then raised a bare ValueError out of send().
    first = f"r=abcdef,s=QSXCR+Q6sek8bf92,i={count}".encode()
    answers: list[bytes] = []

    async def hostile(stream: trio.abc.Stream, pending: bytes) -> None:
        reader = LineReader(stream, pending)
        await stream.send_all(b"334 " + base64.b64encode(first) + b"\r\n")
        answers.append(await reader.line())
        await stream.send_all(b"501 5.7.0 cancelled\r\n")
        await finish_session(reader, [])

    async with SmtpServer(
        credentials={"user": "pencil"}, auth_mechanisms=("SCRAM-SHA-256",)
    ) as server:
        server.on("AUTH", Handover(hostile))
        client = SmtpClient(
            server.host,
            server.port,
            security=Security.STARTTLS,
            ssl_context=server.ssl_context,
            credentials=("user", "pencil"),
        )
        async with client:
            with pytest.raises(SmtpAuthenticationError, match="iteration count") as info:
                await client.send(make_message())
    assert answers == [b"*"]  # RFC 4954 §4: the exchange is cancelled, no proof is sent
    assert info.value.reply is not None and info.value.reply.code == 501


# --- Every password mechanism end to end ---------------------------------------------------


PASSWORD = "s3cret-Pa55"
MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"]


def _client(server: SmtpServer, credentials: object) -> SmtpClient:
    return SmtpClient(
        server.host,
        server.port,
        security=Security.STARTTLS,
        ssl_context=server.ssl_context,
        credentials=credentials,  # type: ignore[arg-type]
    )


def _secret_forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode(), base64.b64encode(b"\0user\0" + raw).decode()]


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_each_password_mechanism_end_to_end_without_secret_in_log(
    caplog: pytest.LogCaptureFixture, make_message: MakeMessage, mechanism: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_smtp")
    async with SmtpServer(credentials={"user": PASSWORD}, auth_mechanisms=(mechanism,)) as server:
        async with _client(server, ("user", PASSWORD)) as client:
            await client.send(make_message())
        conn = server.connections[0]
        assert conn.auth_mechanism == mechanism and conn.auth_identity == "user"
        assert server.messages[0].accepted
    log = caplog.text
    assert f"AUTH {mechanism}" in log  # the log is on, and shows the command
    for form in _secret_forms(PASSWORD):
        assert form not in log


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_each_password_mechanism_refusal_carries_the_reply_and_stops(
    make_message: MakeMessage, mechanism: str
) -> None:
    async with SmtpServer(credentials={"user": PASSWORD}, auth_mechanisms=(mechanism,)) as server:
        async with _client(server, ("user", "wrong")) as client:
            with pytest.raises(SmtpAuthenticationError) as info:
                await client.send(make_message())
            assert info.value.reply is not None and info.value.reply.code == 535
        verbs = server.connections[0].verbs
        assert "MAIL" not in verbs
        assert server.messages == []


async def test_xoauth2_token_callable_end_to_end_without_token_in_log(
    caplog: pytest.LogCaptureFixture, make_message: MakeMessage
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_smtp")
    token = "ya29.audit-token-value"
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        return token

    # The testing server's XOAUTH2 takes the token as the user's password.
    async with SmtpServer(credentials={"user": token}, auth_mechanisms=("XOAUTH2",)) as server:
        async with _client(server, OAuth2("user", fetch)) as client:
            await client.send(make_message())
            await client.send(make_message())  # same connection: no new token needed
        assert server.connections[0].auth_mechanism == "XOAUTH2"
        assert len(server.messages) == 2
    assert calls == 1
    assert token not in caplog.text
    assert base64.b64encode(f"user=user\x01auth=Bearer {token}\x01\x01".encode()).decode() not in (
        caplog.text
    )


#: LOGIN prompts servers really send (user name, password): the draft's, aiosmtpd's with a
#: NUL, and lower-case or colon-less ones.
LOGIN_PROMPTS = [
    (b"Username:", b"Password:"),
    (b"User Name\0", b"Password\0"),
    (b"username", b"password"),
    (b"User Name:", b"PASSWORD"),
]


@pytest.mark.parametrize(("user_prompt", "password_prompt"), LOGIN_PROMPTS)
async def test_login_with_each_prompt_form_servers_send(
    make_message: MakeMessage, user_prompt: bytes, password_prompt: bytes
) -> None:
    async with SmtpServer(
        credentials={"user": PASSWORD},
        auth_mechanisms=("LOGIN",),
        login_prompts=(user_prompt, password_prompt),
    ) as server:
        async with _client(server, ("user", PASSWORD)) as client:
            await client.send(make_message())
        conn = server.connections[0]
        assert conn.auth_mechanism == "LOGIN" and conn.auth_identity == "user"
        assert server.messages[0].accepted


@pytest.mark.parametrize("user_prompt", [b"Login name:", b""])
async def test_login_unrecognised_prompt_cancels_without_sending_anything(
    make_message: MakeMessage, user_prompt: bytes
) -> None:
    async with SmtpServer(
        credentials={"user": PASSWORD},
        auth_mechanisms=("LOGIN",),
        login_prompts=(user_prompt, b"Password:"),
    ) as server:
        async with _client(server, ("user", PASSWORD)) as client:
            with pytest.raises(SmtpAuthenticationError, match="unrecognised prompt"):
                await client.send(make_message())
        commands = [c.raw for c in server.connections[0].commands]
        # RFC 4954 §4: the exchange is cancelled with "*"; neither user nor password went out.
        assert commands[-2:] == [b"AUTH LOGIN\r\n", b"*\r\n"]
        assert server.messages == []
