"""SmtpServer.wait_for wakes on every record: commands and replies, not only messages.

Each wait starts before the client sends anything, and the client stays connected and sends
no message: only the command (or its reply) being recorded can wake the waiter.  Before
commands and replies woke it, these waits hung until the connection closed.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing
from helpers.raw_client import RawClient

from trio_smtp.testing import Delay, SmtpServer

#: Generous: with the feature the waits return at once; without it they hang until here.
_BOUND = 20


def _verbs(server: SmtpServer) -> list[str]:
    return server.connections[0].verbs if server.connections else []


async def _connect(server: SmtpServer) -> RawClient:
    client = await RawClient.connect(server.host, server.port)
    assert (await client.reply()).code == 220
    return client


async def _wait_then_send(
    server: SmtpServer, predicate: Callable[[], bool], client: RawClient, line: bytes
) -> None:
    """Start ``server.wait_for(predicate)``; once it is blocked, send ``line``."""

    async def waiter() -> None:
        with trio.fail_after(_BOUND):
            await server.wait_for(predicate)

    assert not predicate()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        await client.send(line)


async def test_wait_for_a_command_returns_while_the_client_is_still_connected() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server)
        await _wait_then_send(server, lambda: "EHLO" in _verbs(server), client, b"EHLO a.test\r\n")
        assert server.connections[0].helo == "a.test"
        assert not server.connections[0].closed
        await client.aclose()


async def test_wait_for_a_reply_wakes_when_the_server_answers() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("NOOP", Delay(0.2))  # recorded at once, answered a little later

        def answered() -> bool:
            commands = server.connections[0].commands
            return bool(commands) and commands[-1].verb == "NOOP" and commands[-1].reply is not None

        client = await _connect(server)
        await _wait_then_send(server, answered, client, b"NOOP\r\n")
        reply = server.connections[0].commands[-1].reply
        assert reply is not None and reply.code == 250
        await client.aclose()


async def test_wait_for_a_command_wakes_before_the_server_replies_to_it() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("NOOP", Delay(3600))  # the reply to NOOP never comes during the test
        client = await _connect(server)
        await _wait_then_send(server, lambda: "NOOP" in _verbs(server), client, b"NOOP\r\n")
        assert server.connections[0].commands[-1].reply is None  # recorded, not yet answered
        await client.aclose()
