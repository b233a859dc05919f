"""``source_address=``: the local IP address connections leave from (SmtpClient, SmtpPool,
``trio_smtp.send`` and ``trio-smtp send --source-address``).

Loopback is all of 127.0.0.0/8 on Linux, so a connection from 127.0.0.2 to the testing server
on 127.0.0.1 shows the server a peer other than the default one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_smtp
from trio_smtp import DeliveryMethod, Security, SmtpClient, SmtpConnectError, SmtpPool
from trio_smtp._cli.main import main
from trio_smtp.testing import SmtpServer

FROM, TO = "a@example.org", "b@example.net"
BODY = b"Subject: hi\r\n\r\nhello\r\n"


@pytest.fixture
async def server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tls="none") as running:
        yield running


def _peers(server: SmtpServer) -> set[str]:
    return {str(connection.peer[0]) for connection in server.connections}  # type: ignore[index]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["literal", "name"])
async def test_client_connects_from_the_address(server: SmtpServer, host: str) -> None:
    # An address literal is one connect() of our own; a name goes through trio's happy
    # eyeballs (which binds each attempt: ::1 from 127.0.0.2 fails, 127.0.0.1 works).
    async with SmtpClient(
        host, server.port, security=Security.NONE, source_address="127.0.0.2"
    ) as client:
        await client.send(BODY, sender=FROM, recipients=[TO])
        await client.send(BODY, sender=FROM, recipients=[TO])
    assert _peers(server) == {"127.0.0.2"}
    assert len(server.messages) == 2


async def test_every_pool_connection_leaves_from_the_address(server: SmtpServer) -> None:
    pool = SmtpPool(
        server.host,
        server.port,
        security=Security.NONE,
        source_address="127.0.0.3",
        max_connections=3,
        max_messages_per_connection=1,
    )
    async with pool, trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(lambda: pool.send(BODY, sender=FROM, recipients=[TO]))
    assert len(server.connections) >= 6
    assert _peers(server) == {"127.0.0.3"}


async def test_send_function_and_ipv4_default(server: SmtpServer) -> None:
    await trio_smtp.send(
        BODY,
        host=server.host,
        port=server.port,
        security=Security.NONE,
        source_address="127.0.0.4",
        sender=FROM,
        recipients=[TO],
    )
    async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
        await client.send(BODY, sender=FROM, recipients=[TO])  # without it: the default
    assert [str(c.peer[0]) for c in server.connections] == ["127.0.0.4", "127.0.0.1"]  # type: ignore[index]


async def test_an_address_this_machine_does_not_have_is_a_connect_error(
    server: SmtpServer,
) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: bind() fails, nothing is sent.
    async with SmtpClient(
        server.host, server.port, security=Security.NONE, source_address="192.0.2.1"
    ) as client:
        with pytest.raises(SmtpConnectError, match=r":\d+ from 192\.0\.2\.1: address not avail"):
            await client.send(BODY, sender=FROM, recipients=[TO])
    assert server.connections == []


async def _factory() -> trio.abc.Stream:
    raise AssertionError("never called")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"source_address": "mail.example.org"}, ValueError, "must be an IP address"),
        ({"source_address": "127.0.0.1:25"}, ValueError, "must be an IP address"),
        ({"source_address": 2130706433}, TypeError, "must be a str, not int"),
        ({"source_address": "127.0.0.1", "unix_socket": "/tmp/s"}, ValueError, "Unix socket"),
        ({"source_address": "127.0.0.1", "stream_factory": _factory}, ValueError, "stream_fac"),
        ({"source_address": "127.0.0.1", "proxy": "http://127.0.0.1:3128"}, ValueError, "proxy"),
        (
            {
                "source_address": "127.0.0.1",
                "delivery_method": DeliveryMethod.PICKUP_DIRECTORY,
                "pickup_directory": "/tmp",
            },
            ValueError,
            "pickup directory",
        ),
    ],
)
@pytest.mark.parametrize("cls", [SmtpClient, SmtpPool])
def test_bad_source_address_is_refused_by_the_constructor(
    cls: type[Any], options: dict[str, Any], error: type[Exception], match: str
) -> None:
    host = None if "unix_socket" in options or "pickup_directory" in options else "127.0.0.1"
    port = None if host is None else 25
    with pytest.raises(error, match=match):
        cls(host, port, **options)


async def test_cli_send_from_address(server: SmtpServer, tmp_path: Path) -> None:
    status = await trio.to_thread.run_sync(
        main,
        [
            "send", "--server", f"smtp://{server.host}:{server.port}?tls=none",
            "--source-address", "127.0.0.5",
            "--from", FROM, "--to", TO, "--subject", "hi", "--body", "hello",
        ],
    )  # fmt: skip
    assert status == 0
    assert _peers(server) == {"127.0.0.5"}


async def test_cli_bulk_send_from_address(server: SmtpServer, tmp_path: Path) -> None:
    for n in range(3):
        (tmp_path / f"{n}.eml").write_bytes(b"From: %s\r\nTo: %s\r\n\r\nbody\r\n" % (
            FROM.encode(), TO.encode()))  # fmt: skip
    status = await trio.to_thread.run_sync(
        main,
        [
            "send", "--server", f"smtp://{server.host}:{server.port}?tls=none",
            "--source-address", "127.0.0.6", "--connections", "2", os.fspath(tmp_path),
        ],
    )  # fmt: skip
    assert status == 0
    assert len(server.messages) == 3
    assert _peers(server) == {"127.0.0.6"}


def test_cli_refuses_a_source_address_that_is_no_ip(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["send", "--server", "smtp://127.0.0.1:25?tls=none", "--source-address", "here"]
    status = main([*argv, "--from", FROM, "--to", TO, "--body", "x"])
    assert status == 2
    assert "--source-address must be an IP address, not 'here'" in capsys.readouterr().err
