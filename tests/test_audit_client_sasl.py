"""Audit of issue 5's SASL item end to end: every password mechanism the testing server
speaks, alone on offer, succeeds with the right password, fails with the server's reply on a
wrong one (nothing sent after), and never shows the secret in the protocol log.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from trio_smtp import OAuth2, Security, SmtpAuthenticationError, SmtpClient
from trio_smtp.testing import SmtpServer

MakeMessage = Callable[..., EmailMessage]
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
