"""The testing server driven by the standard library's smtplib (in a worker thread)."""

from __future__ import annotations

import base64
import smtplib
from email.message import EmailMessage

import pytest
import trio
from helpers.raw_client import RawClient, start_session
from scramp import ScramClient

from trio_smtp.testing import SmtpServer

CREDENTIALS = {"alice": "s3cret"}


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.net, carol@example.net"
    msg["Subject"] = "Hello"
    msg.set_content(".leading dot\nsecond line\n")
    return msg


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_starttls_auth_and_send(mechanism: str) -> None:
    async with SmtpServer(credentials=CREDENTIALS, require_tls=True, require_auth=True) as server:

        def client() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP(server.host, server.port) as smtp:
                smtp.starttls(context=server.ssl_context)
                smtp.ehlo()
                smtp.user, smtp.password = "alice", "s3cret"
                smtp.auth(mechanism, getattr(smtp, "auth_" + mechanism.lower().replace("-", "_")))
                return smtp.send_message(_message())

        refused = await trio.to_thread.run_sync(client)
        message = await server.wait_for_message(1)

    assert refused == {}
    assert message.sender == "alice@example.org"
    assert message.recipients == ["bob@example.net", "carol@example.net"]
    assert message.accepted
    # Un-stuffed: the line smtplib sent as "..leading dot" is recorded as written.
    assert b"\r\n.leading dot\r\nsecond line\r\n" in message.data
    assert message.headers["Subject"] == "Hello"
    connection = server.connections[0]
    assert connection.tls_version is not None and connection.tls_version.startswith("TLS")
    assert connection.tls_cipher
    assert connection.auth_identity == "alice"
    assert connection.auth_mechanism == mechanism
    assert connection.verbs[:3] == ["EHLO", "STARTTLS", "EHLO"]


async def test_implicit_tls_with_smtp_ssl() -> None:
    async with SmtpServer(tls="implicit", credentials=CREDENTIALS) as server:

        def client() -> None:
            with smtplib.SMTP_SSL(server.host, server.port, context=server.ssl_context) as smtp:
                smtp.login("alice", "s3cret")
                smtp.sendmail("alice@example.org", ["bob@example.net"], b"Subject: x\r\n\r\nhi\r\n")

        await trio.to_thread.run_sync(client)
        message = await server.wait_for_message()
    assert message.data == b"Subject: x\r\n\r\nhi\r\n"
    assert server.connections[0].tls_version is not None


async def test_wrong_password_is_535() -> None:
    async with SmtpServer(credentials=CREDENTIALS) as server:

        def client() -> None:
            with smtplib.SMTP(server.host, server.port) as smtp:
                smtp.starttls(context=server.ssl_context)
                smtp.login("alice", "wrong")

        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            await trio.to_thread.run_sync(client)
    assert info.value.smtp_code == 535
    assert server.connections[0].auth_identity is None


async def test_certificate_is_not_trusted_without_the_servers_context() -> None:
    import ssl

    async with SmtpServer() as server:

        def client() -> None:
            with smtplib.SMTP(server.host, server.port) as smtp:
                smtp.starttls(context=ssl.create_default_context())

        with pytest.raises(ssl.SSLCertVerificationError):
            await trio.to_thread.run_sync(client)
        record = await server.wait_for_connection_closed(1)
    assert record.close_reason == "peer"
    assert record.tls_version is None


async def _authenticated(server: SmtpServer) -> RawClient:
    client = await RawClient.connect(server.host, server.port)
    await start_session(client)
    assert (await client.command(b"STARTTLS\r\n")).code == 220
    await client.starttls(server.ssl_context)
    await client.command(b"EHLO client.test\r\n")
    return client


async def test_scram_sha_256() -> None:
    async with SmtpServer(credentials=CREDENTIALS) as server:
        client = await _authenticated(server)
        scram = ScramClient(["SCRAM-SHA-256"], "alice", "s3cret")
        first = base64.b64encode(scram.get_client_first().encode())
        reply = await client.command(b"AUTH SCRAM-SHA-256 " + first + b"\r\n")
        assert reply.code == 334
        scram.set_server_first(base64.b64decode(reply.text).decode())
        reply = await client.command(base64.b64encode(scram.get_client_final().encode()) + b"\r\n")
        assert reply.code == 334
        scram.set_server_final(base64.b64decode(reply.text).decode())  # verifies the server
        reply = await client.command(b"\r\n")
        assert reply.code == 235
        await client.aclose()
        await server.wait_for_connection_closed(1)
    assert server.connections[0].auth_identity == "alice"
    assert server.connections[0].auth_mechanism == "SCRAM-SHA-256"


@pytest.mark.parametrize(("token", "code"), [("tok-123", 235), ("bad", 535)])
async def test_xoauth2(token: str, code: int) -> None:
    async with SmtpServer(credentials={"alice@example.org": "tok-123"}) as server:
        client = await _authenticated(server)
        response = f"user=alice@example.org\x01auth=Bearer {token}\x01\x01".encode()
        reply = await client.command(b"AUTH XOAUTH2 " + base64.b64encode(response) + b"\r\n")
        if code == 535:
            # The error arrives as a JSON challenge, acknowledged with an empty line.
            assert reply.code == 334
            assert b'"status": "401"' in base64.b64decode(reply.text)
            reply = await client.command(b"\r\n")
        assert reply.code == code
        await client.aclose()


async def test_auth_cancelled_with_star() -> None:
    async with SmtpServer(credentials=CREDENTIALS) as server:
        client = await _authenticated(server)
        assert (await client.command(b"AUTH LOGIN\r\n")).code == 334
        reply = await client.command(b"*\r\n")
        assert reply.code == 501
        await client.aclose()
