"""SmtpClient over a Unix-domain socket: the testing server served on a socket we bind."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
import trio

from trio_smtp import Security, SmtpAuthenticationError, SmtpClient, SmtpConnectError
from trio_smtp.testing import SmtpServer

MakeMessage = Callable[..., EmailMessage]

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")


@pytest.fixture
async def unix_server(tmp_path: Path) -> AsyncIterator[tuple[SmtpServer, str]]:
    """The testing server (plaintext, AUTH with user/password) on ``tmp_path/smtp.sock``."""
    path = str(tmp_path / "smtp.sock")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen()
    server = SmtpServer(tls="none", credentials={"user": "password"})

    async def handle(stream: trio.SocketStream) -> None:
        await server.serve_stream(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, [trio.SocketListener(sock)])
        yield server, path
        nursery.cancel_scope.cancel()


async def test_send_with_credentials_over_a_unix_socket(
    unix_server: tuple[SmtpServer, str], make_message: MakeMessage
) -> None:
    server, path = unix_server
    # No security given: a local socket defaults to no TLS, and credentials are allowed
    # because the peer is on this machine.
    client = SmtpClient(unix_socket=path, credentials=("user", "password"))
    async with client:
        result = await client.send(make_message())
    assert result.accepted == ("rcpt@example.net",)
    assert server.connections[0].auth_identity == "user"
    assert len(server.messages) == 1
    assert server.connections[0].helo  # an EHLO name was found without a TCP address


async def test_from_url_smtp_unix(
    unix_server: tuple[SmtpServer, str], make_message: MakeMessage
) -> None:
    server, path = unix_server
    async with SmtpClient.from_url(f"smtp+unix://user:password@{path}") as client:
        await client.send(make_message())
        await client.send(make_message())
    assert len(server.messages) == 2
    assert len(server.connections) == 1  # reused like a TCP connection
    assert server.connections[0].verbs[-1] == "QUIT"


async def test_wrong_password_over_a_unix_socket(
    unix_server: tuple[SmtpServer, str], make_message: MakeMessage
) -> None:
    server, path = unix_server
    async with SmtpClient(unix_socket=path, credentials=("user", "nope")) as client:
        with pytest.raises(SmtpAuthenticationError):
            await client.send(make_message())
    assert server.messages == []


async def test_missing_socket_is_a_connect_error(tmp_path: Path, make_message: MakeMessage) -> None:
    async with SmtpClient(unix_socket=tmp_path / "nobody.sock") as client:
        with pytest.raises(SmtpConnectError, match=r"nobody\.sock"):
            await client.send(make_message())


async def test_protocol_log_names_the_socket(
    unix_server: tuple[SmtpServer, str],
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, path = unix_server
    caplog.set_level(logging.DEBUG, logger="trio_smtp.protocol")
    async with SmtpClient(unix_socket=path) as client:
        await client.send(make_message())
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_smtp.protocol"]
    assert lines and all(line.startswith(path + " ") for line in lines)


def test_unix_socket_arguments_checked_at_construction(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with pytest.raises(ValueError, match="port"):
        SmtpClient(unix_socket=path, port=25)
    with pytest.raises(ValueError, match="host="):
        SmtpClient(unix_socket=path, security=Security.STARTTLS)
    with pytest.raises(ValueError, match="NUL"):
        SmtpClient(unix_socket="/tmp/a\0b")
    SmtpClient(unix_socket=path, host="mail.example.com", security=Security.STARTTLS)
