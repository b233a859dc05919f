"""SCRAM-SHA-1 and OAUTHBEARER on the testing server, driven end to end by trio_smtp's own
SmtpClient over loopback: delivery and the recorded identity on success, the client's
SmtpAuthenticationError and the server's 535 on failure, and RFC 7628's error exchange."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from trio_smtp import OAuth2, Security, SmtpAuthenticationError, SmtpClient
from trio_smtp.sasl import Mechanism, OAuthBearer, ScramSha1
from trio_smtp.testing import ALL_MECHANISMS, CommandRecord, ConnectionRecord, SmtpServer

MakeMessage = Callable[..., EmailMessage]
PASSWORD = "s3cret-Pa55"
TOKEN = "ya29.a0AfH6SMB-token_value"
#: Too long for the AUTH line once base64-encoded (RFC 4954 §4: 512 octets).
LONG_TOKEN = "ya29." + "A1b2C3d4" * 160


def _client(server: SmtpServer, credentials: tuple[str, str] | OAuth2 | Mechanism) -> SmtpClient:
    return SmtpClient(
        server.host,
        server.port,
        security=Security.STARTTLS,
        ssl_context=server.ssl_context,
        credentials=credentials,
    )


def _auth_lines(conn: ConnectionRecord) -> list[CommandRecord]:
    """The AUTH command and its continuation lines (verb ``""``), in order."""
    start = conn.verbs.index("AUTH")
    lines = [conn.commands[start]]
    for command in conn.commands[start + 1 :]:
        if command.verb:
            break
        lines.append(command)
    return lines


def _codes(lines: list[CommandRecord]) -> list[int | None]:
    return [None if c.reply is None else c.reply.code for c in lines]


def _delivered(server: SmtpServer, user: str, mechanism: str) -> None:
    conn = server.connections[0]
    assert conn.auth_mechanism == mechanism
    assert conn.auth_identity == user
    assert len(server.messages) == 1 and server.messages[0].accepted
    assert server.messages[0].recipients == ["rcpt@example.net"]


def _refused(server: SmtpServer, error: SmtpAuthenticationError) -> ConnectionRecord:
    assert error.reply is not None and error.reply.code == 535
    conn = server.connections[0]
    assert conn.auth_identity is None and conn.auth_mechanism is None
    assert "MAIL" not in conn.verbs and not server.messages
    last = _auth_lines(conn)[-1].reply
    assert last is not None and last.code == 535 and last.text.startswith("5.7.8 ")
    return conn


# -- SCRAM-SHA-1 ----------------------------------------------------------------------------


async def test_scram_sha_1_forced_delivers_and_records_the_identity(
    make_message: MakeMessage,
) -> None:
    server = SmtpServer(credentials={"user": PASSWORD}, auth_mechanisms=ALL_MECHANISMS)
    async with server, _client(server, ScramSha1("user", PASSWORD)) as client:
        await client.send(make_message())
    _delivered(server, "user", "SCRAM-SHA-1")
    lines = _auth_lines(server.connections[0])
    assert lines[0].argument.startswith("SCRAM-SHA-1 ")  # client-first with AUTH
    # server-first, then server-final as a 334 (RFC 4954 §4), then 235 to the empty answer.
    assert _codes(lines) == [334, 334, 235]
    assert lines[-1].argument == ""
    server_final = lines[1].reply
    assert server_final is not None
    assert base64.b64decode(server_final.text).startswith(b"v=")  # RFC 5802 §7 verifier


async def test_password_credentials_use_scram_sha_1_when_sha_256_is_not_offered(
    make_message: MakeMessage,
) -> None:
    offered = ("CRAM-MD5", "PLAIN", "SCRAM-SHA-1", "LOGIN")
    server = SmtpServer(credentials={"user": PASSWORD}, auth_mechanisms=offered)
    async with server, _client(server, ("user", PASSWORD)) as client:
        await client.send(make_message())
    _delivered(server, "user", "SCRAM-SHA-1")


@pytest.mark.parametrize(("user", "password"), [("user", "wrong"), ("nobody", PASSWORD)])
async def test_scram_sha_1_refused_with_535(
    make_message: MakeMessage, user: str, password: str
) -> None:
    server = SmtpServer(credentials={"user": PASSWORD}, auth_mechanisms=ALL_MECHANISMS)
    async with server, _client(server, ScramSha1(user, password)) as client:
        with pytest.raises(SmtpAuthenticationError) as info:
            await client.send(make_message())
    conn = _refused(server, info.value)
    assert _auth_lines(conn)[0].argument.startswith("SCRAM-SHA-1 ")


# -- OAUTHBEARER ----------------------------------------------------------------------------


async def test_oauthbearer_forced_delivers_and_records_the_identity(
    make_message: MakeMessage,
) -> None:
    credentials = {"me@example.org": TOKEN}
    async with SmtpServer(credentials=credentials, auth_mechanisms=ALL_MECHANISMS) as server:
        mechanism = OAuthBearer("me@example.org", TOKEN, server.host, server.port)
        async with _client(server, mechanism) as client:
            await client.send(make_message())
    _delivered(server, "me@example.org", "OAUTHBEARER")
    lines = _auth_lines(server.connections[0])
    assert _codes(lines) == [235]  # initial response with AUTH, accepted at once
    assert mechanism.server_error is None


async def test_oauth2_credentials_pick_oauthbearer_when_offered(
    make_message: MakeMessage,
) -> None:
    # The same {user: token} table serves XOAUTH2 and OAUTHBEARER.
    credentials = {"me@example.org": TOKEN}
    server = SmtpServer(credentials=credentials, auth_mechanisms=ALL_MECHANISMS)
    async with server, _client(server, OAuth2("me@example.org", TOKEN)) as client:
        await client.send(make_message())
    _delivered(server, "me@example.org", "OAUTHBEARER")


async def test_oauthbearer_authzid_with_comma_and_equals_is_unescaped(
    make_message: MakeMessage,
) -> None:
    # RFC 5801 §4: the client sends "a=od=2Cd=3Dd,"; the identity recorded is the real name.
    user = "od,d=d@example.org"
    server = SmtpServer(credentials={user: TOKEN}, auth_mechanisms=("OAUTHBEARER",))
    async with server, _client(server, OAuthBearer(user, TOKEN)) as client:
        await client.send(make_message())
    _delivered(server, user, "OAUTHBEARER")


async def test_long_oauthbearer_token_goes_after_an_empty_334(make_message: MakeMessage) -> None:
    credentials = {"me@example.org": LONG_TOKEN}
    server = SmtpServer(credentials=credentials, auth_mechanisms=("OAUTHBEARER",))
    async with server, _client(server, OAuth2("me@example.org", LONG_TOKEN)) as client:
        await client.send(make_message())
    _delivered(server, "me@example.org", "OAUTHBEARER")
    lines = _auth_lines(server.connections[0])
    # RFC 4954 §4: too long for the AUTH line, so AUTH goes alone and the 334 is answered.
    assert lines[0].argument == "OAUTHBEARER"
    assert lines[0].reply is not None and lines[0].reply.raw == b"334 \r\n"
    assert _codes(lines) == [334, 235]


async def test_oauthbearer_wrong_token_follows_rfc_7628_then_535(
    make_message: MakeMessage,
) -> None:
    credentials = {"me@example.org": TOKEN}
    async with SmtpServer(credentials=credentials, auth_mechanisms=ALL_MECHANISMS) as server:
        mechanism = OAuthBearer("me@example.org", "expired-token", server.host, server.port)
        async with _client(server, mechanism) as client:
            with pytest.raises(SmtpAuthenticationError) as info:
                await client.send(make_message())
    conn = _refused(server, info.value)
    auth, acknowledgement = _auth_lines(conn)
    # RFC 7628 §3.2.2: the failure is first a 334 carrying a JSON error ...
    assert auth.argument.startswith("OAUTHBEARER ")
    assert auth.reply is not None and auth.reply.code == 334
    error = json.loads(base64.b64decode(auth.reply.text))
    assert error["status"] == "invalid_token"
    # ... which the client saw, and answered with a single kvsep (§3.2.3): then the 535.
    assert mechanism.server_error is not None
    assert json.loads(mechanism.server_error) == error
    assert acknowledgement.argument == "AQ=="
    assert _codes([auth, acknowledgement]) == [334, 535]


async def test_oauthbearer_token_of_another_user_is_refused(make_message: MakeMessage) -> None:
    credentials = {"me@example.org": TOKEN, "other@example.org": "other-token"}
    server = SmtpServer(credentials=credentials, auth_mechanisms=("OAUTHBEARER",))
    async with server, _client(server, OAuthBearer("me@example.org", "other-token")) as client:
        with pytest.raises(SmtpAuthenticationError) as info:
            await client.send(make_message())
    _refused(server, info.value)
