"""SmtpClient against aiosmtpd (asyncio, run in its own thread by its Controller)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from helpers.daemons import free_port

from trio_smtp import (
    Security,
    SmtpAuthenticationError,
    SmtpClient,
    SmtpFailedRecipientsError,
    SmtpTlsError,
)

pytestmark = pytest.mark.interop
MakeMessage = Callable[..., EmailMessage]


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps envelopes and refuses addresses starting "bad"."""

    envelopes: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("bad"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(
            (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        )
        return "250 2.0.0 queued"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login == b"user" and auth_data.password == b"password"
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _start(handler: Recorder, **kwargs: Any) -> Controller:
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), auth_require_tls=False, **kwargs
    )
    controller.start()
    return controller


@pytest.fixture
def aiosmtpd_server() -> Iterator[tuple[Controller, Recorder]]:
    handler = Recorder()
    controller = _start(handler, authenticator=_authenticator)
    try:
        yield controller, handler
    finally:
        controller.stop()


@pytest.fixture
def aiosmtpd_tls(ca: trustme.CA) -> Iterator[tuple[Controller, Recorder]]:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    handler = Recorder()
    controller = _start(
        handler, tls_context=context, require_starttls=True, authenticator=_authenticator
    )
    try:
        yield controller, handler
    finally:
        controller.stop()


def _port(controller: Controller) -> int:
    return int(controller.port)


async def test_plain_send_with_auth_on_loopback(
    aiosmtpd_server: tuple[Controller, Recorder], make_message: MakeMessage
) -> None:
    controller, handler = aiosmtpd_server
    client = SmtpClient(
        "127.0.0.1", _port(controller), security=Security.NONE, credentials=("user", "password")
    )
    msg = make_message("a@example.net", body=".starts with a dot\nend\n", Bcc="c@example.net")
    async with client:
        result = await client.send(msg)
        await client.send(b"Subject: raw\r\n\r\nx\r\n", sender="", recipients=["d@example.net"])
    assert result.accepted == ("a@example.net", "c@example.net")
    (sender, rcpts, data), second = handler.envelopes
    assert sender == "sender@example.org"
    assert rcpts == ["a@example.net", "c@example.net"]
    assert b"\r\n.starts with a dot\r\nend\r\n" in data
    assert b"c@example.net" not in data
    assert second[0] == "<>"  # aiosmtpd keeps the null reverse-path as written


@pytest.fixture
def aiosmtpd_login_only() -> Iterator[tuple[Controller, Recorder]]:
    handler = Recorder()
    # aiosmtpd offers LOGIN and PLAIN; without PLAIN the client has to use LOGIN, whose
    # prompts here are "User Name\\0" and "Password\\0", not the draft's "Username:".
    controller = _start(handler, authenticator=_authenticator, auth_exclude_mechanism=["PLAIN"])
    try:
        yield controller, handler
    finally:
        controller.stop()


async def test_auth_login_with_aiosmtpd_prompts(
    aiosmtpd_login_only: tuple[Controller, Recorder], make_message: MakeMessage
) -> None:
    controller, handler = aiosmtpd_login_only
    client = SmtpClient(
        "127.0.0.1", _port(controller), security=Security.NONE, credentials=("user", "password")
    )
    async with client:
        result = await client.send(make_message("a@example.net"))
    assert result.accepted == ("a@example.net",)
    assert len(handler.envelopes) == 1


async def test_auth_login_wrong_password_with_aiosmtpd_is_its_535(
    aiosmtpd_login_only: tuple[Controller, Recorder], make_message: MakeMessage
) -> None:
    controller, handler = aiosmtpd_login_only
    client = SmtpClient(
        "127.0.0.1", _port(controller), security=Security.NONE, credentials=("user", "nope")
    )
    async with client:
        with pytest.raises(SmtpAuthenticationError) as info:
            await client.send(make_message())
    assert info.value.reply is not None and info.value.reply.code == 535
    assert handler.envelopes == []


async def test_wrong_password(
    aiosmtpd_server: tuple[Controller, Recorder], make_message: MakeMessage
) -> None:
    controller, handler = aiosmtpd_server
    client = SmtpClient(
        "127.0.0.1", _port(controller), security=Security.NONE, credentials=("user", "nope")
    )
    async with client:
        with pytest.raises(SmtpAuthenticationError) as info:
            await client.send(make_message())
    assert info.value.reply is not None and info.value.reply.code == 535
    assert handler.envelopes == []


async def test_partial_refusal(
    aiosmtpd_server: tuple[Controller, Recorder], make_message: MakeMessage
) -> None:
    controller, handler = aiosmtpd_server
    async with SmtpClient("127.0.0.1", _port(controller), security=Security.NONE) as client:
        with pytest.raises(SmtpFailedRecipientsError) as info:
            await client.send(make_message("ok@example.net, bad@example.net"))
    assert info.value.result is not None
    assert info.value.result.accepted == ("ok@example.net",)
    assert handler.envelopes[0][1] == ["ok@example.net"]


async def test_starttls_verified_with_trustme_and_auth(
    aiosmtpd_tls: tuple[Controller, Recorder], ca: trustme.CA, make_message: MakeMessage
) -> None:
    controller, handler = aiosmtpd_tls
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client = SmtpClient(
        "localhost",
        _port(controller),
        ssl_context=context,
        credentials=("user", "password"),
    )
    async with client:
        await client.send(make_message())
    assert len(handler.envelopes) == 1


async def test_starttls_with_untrusted_certificate(
    aiosmtpd_tls: tuple[Controller, Recorder], make_message: MakeMessage
) -> None:
    controller, handler = aiosmtpd_tls
    async with SmtpClient("localhost", _port(controller), credentials=("u", "p")) as client:
        with pytest.raises(SmtpTlsError):
            await client.send(make_message())
    assert handler.envelopes == []
