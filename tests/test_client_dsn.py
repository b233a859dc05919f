"""DSN (RFC 3461) and REQUIRETLS (RFC 8689) options of send/send_async, checked in what the
testing server recorded."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest

from trio_smtp import (
    DeliveryNotification,
    DsnReturn,
    Security,
    SmtpClient,
    SmtpError,
    SmtpTlsError,
)
from trio_smtp.testing import SmtpServer

MakeMessage = Callable[..., EmailMessage]
ClientFactory = Callable[..., SmtpClient]
N = DeliveryNotification


def plain_client(server: SmtpServer) -> SmtpClient:
    return SmtpClient(server.host, server.port, security=Security.NONE)


@pytest.mark.smtp_server(tls="none")
async def test_notify_ret_envid_orcpt_on_the_wire(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    msg = make_message("a@example.net", Cc="b@example.net")
    async with plain_client(smtp_server) as client:
        await client.send(
            msg,
            notify={"a@example.net": N.ON_SUCCESS | N.ON_FAILURE, "b@example.net": N.NEVER},
            ret=DsnReturn.HEADERS,
            envid="job+42 =x",
            orcpt={"a@example.net": "orig+a@example.org"},
        )
    message = smtp_server.messages[0]
    assert message.mail_params["RET"] == "HDRS"
    assert message.mail_params["ENVID"] == "job+2B42+20+3Dx"  # xtext (RFC 3461 §4)
    assert message.rcpt_params["a@example.net"] == {
        "NOTIFY": "SUCCESS,FAILURE",
        "ORCPT": "rfc822;orig+2Ba@example.org",
    }
    assert message.rcpt_params["b@example.net"] == {"NOTIFY": "NEVER"}


@pytest.mark.smtp_server(tls="none")
async def test_one_flag_applies_to_every_recipient(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    async with plain_client(smtp_server) as client:
        client.send_async(
            make_message("a@example.net", Cc="b@example.net"), notify=N.DELAY | N.ON_FAILURE
        )
        event = await client.completed.receive()
    assert event.error is None
    params = smtp_server.messages[0].rcpt_params
    assert params == {r: {"NOTIFY": "FAILURE,DELAY"} for r in ("a@example.net", "b@example.net")}
    assert "RET" not in smtp_server.messages[0].mail_params


@pytest.mark.smtp_server(tls="none")
async def test_no_options_no_parameters(smtp_server: SmtpServer, make_message: MakeMessage) -> None:
    async with plain_client(smtp_server) as client:
        await client.send(make_message(), notify=N.NONE)
    message = smtp_server.messages[0]
    assert message.rcpt_params == {"rcpt@example.net": {}}
    assert not {"RET", "ENVID", "REQUIRETLS"} & set(message.mail_params)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"notify": N.NEVER | N.ON_FAILURE}, ValueError),
        ({"notify": "SUCCESS"}, TypeError),
        ({"notify": {"other@example.net": N.ON_SUCCESS}}, ValueError),
        ({"ret": "FULL"}, TypeError),
        ({"envid": "x" * 101}, ValueError),
        ({"envid": "caf\u00e9"}, ValueError),
        ({"orcpt": {"rcpt@example.net": "bad\r\nx"}}, ValueError),
        ({"orcpt": {"nobody@example.net": "a@example.org"}}, ValueError),
        ({"requiretls": "yes"}, TypeError),
    ],
)
@pytest.mark.smtp_server(tls="none")
async def test_bad_options_refused_before_anything_is_sent(
    smtp_server: SmtpServer,
    make_message: MakeMessage,
    options: dict[str, Any],
    error: type[Exception],
) -> None:
    async with plain_client(smtp_server) as client:
        with pytest.raises(error):
            await client.send(make_message(), **options)
        with pytest.raises(error):
            client.send_async(make_message(), **options)
    assert smtp_server.connections == []


@pytest.mark.smtp_server(tls="none", disable={"DSN"})
async def test_dsn_asked_of_a_server_without_dsn_is_refused_before_mail(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    async with plain_client(smtp_server) as client:
        with pytest.raises(SmtpError, match="DSN"):
            await client.send(make_message(), ret=DsnReturn.FULL)
        await client.send(make_message())  # the session is still good
    assert smtp_server.connections[0].verbs.count("MAIL") == 1


async def test_requiretls_over_tls(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory() as client:
        await client.send(make_message(), requiretls=True)
    assert "REQUIRETLS" in smtp_server.messages[0].mail_params


@pytest.mark.smtp_server(tls="none")
async def test_requiretls_without_tls_is_refused_locally(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    async with plain_client(smtp_server) as client:
        with pytest.raises(SmtpTlsError, match="TLS"):
            await client.send(make_message(), requiretls=True)
    assert "MAIL" not in smtp_server.connections[0].verbs


@pytest.mark.smtp_server(disable={"REQUIRETLS"})
async def test_requiretls_not_offered_is_refused_locally(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory() as client:
        with pytest.raises(SmtpTlsError, match="does not offer"):
            await client.send(make_message(), requiretls=True)
    assert "MAIL" not in smtp_server.connections[0].verbs
    assert smtp_server.connections[0].tls_version is not None
