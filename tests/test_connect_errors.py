"""What a failed connect says: what happened (refused, name not found, timed out) and to
what, as one :class:`SmtpConnectError` (a ``ConnectionError``) with the errno."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest
import trio
from helpers.daemons import free_port

import trio_smtp._io.connect
from trio_smtp import Security, SmtpClient, SmtpConnectError, SmtpTimeoutError, Timeouts
from trio_smtp.testing import SmtpServer


async def send_to(host: str, port: int, **kwargs: object) -> BaseException:
    client = SmtpClient(host, port, security=Security.NONE, **kwargs)  # type: ignore[arg-type]
    with pytest.raises((SmtpConnectError, SmtpTimeoutError)) as caught:
        async with client:
            await client.send(b"Subject: x\r\n\r\nx\r\n", sender="a@b.c", recipients=["d@e.f"])
    return caught.value


async def test_refused_says_refused_and_where() -> None:
    port = free_port()
    error = await send_to("127.0.0.1", port)
    assert isinstance(error, SmtpConnectError)
    assert isinstance(error, ConnectionError)
    assert str(error) == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert error.errno == errno.ECONNREFUSED
    assert error.is_transient


async def test_refused_by_name_lists_the_addresses_tried() -> None:
    port = free_port()
    error = await send_to("localhost", port)
    assert f"cannot connect to localhost:{port}: connection refused (tried " in str(error)
    assert f"127.0.0.1 port {port}" in str(error)


async def test_name_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    # No DNS traffic: the resolver answers "no such name" as it would for .invalid.
    async def no_such_name(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(trio.socket, "getaddrinfo", no_such_name)
    error = await send_to("mail.example.invalid", 25)
    assert str(error) == (
        "cannot connect to mail.example.invalid:25: host name not found (Name or service not known)"
    )


async def test_unix_socket_missing(tmp_path: Path) -> None:
    path = tmp_path / "nobody.sock"
    client = SmtpClient(unix_socket=str(path))
    with pytest.raises(SmtpConnectError) as caught:
        async with client:
            await client.send(b"Subject: x\r\n\r\nx\r\n", sender="a@b.c", recipients=["d@e.f"])
    assert str(caught.value) == f"cannot connect to {path}: no such socket file"
    assert caught.value.errno == errno.ENOENT


async def test_connect_timeout_names_the_peer(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def black_hole(*args: object, **kwargs: object) -> object:
        await trio.sleep_forever()

    # Where the client dials TCP (an address literal never reaches trio.open_tcp_stream).
    monkeypatch.setattr(trio_smtp._io.connect, "open_tcp", black_hole)
    error = await send_to("192.0.2.1", 25, timeouts=Timeouts(connect=7))
    assert isinstance(error, SmtpTimeoutError)
    assert str(error) == "timed out after 7 s waiting for the connection to 192.0.2.1:25"


async def test_an_ipv6_literal_is_dialled_directly() -> None:
    # An address literal is one connect (trio_smtp._io.connect.open_tcp), IPv6 included.
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with SmtpServer(host="::1", tls="none") as server:
        async with SmtpClient("::1", server.port, security=Security.NONE) as client:
            await client.send(
                b"Subject: hi\r\n\r\nhi\r\n", sender="a@b.example", recipients=["c@d.example"]
            )
        assert len(server.messages) == 1
        port = server.port
    error = await send_to("::1", port)  # closed now: refused, worded as for IPv4
    assert str(error) == f"cannot connect to ::1:{port}: connection refused"
