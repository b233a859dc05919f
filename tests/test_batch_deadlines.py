"""send_many's per-phase deadlines (RFC 5321 §4.5.3.2) under its one scope per connection:
each write and reply keeps its own budget, a timeout gives the messages involved the same
outcomes a lost connection does, and the user's source is never timed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from trio_smtp import (
    OutgoingMessage,
    Security,
    SendResult,
    SmtpClient,
    SmtpConnectError,
    SmtpDeliveryTimeoutError,
    SmtpDeliveryUnknownError,
    SmtpTimeoutError,
    Timeouts,
)
from trio_smtp.testing import Delay, SmtpServer

FROM = "from@example.org"
SHORT = Timeouts(mail=5, rcpt=5, data_initiation=5, data_block=5, data_termination=5)


def message(i: int) -> OutgoingMessage:
    body = b"Subject: message %d\r\n\r\nbody %d\r\n" % (i, i)
    return OutgoingMessage(body, sender=FROM, recipients=[f"to{i}@example.net"])


def client_for(server: SmtpServer) -> SmtpClient:
    return SmtpClient(server.host, server.port, security=Security.NONE, timeouts=SHORT)


@pytest.fixture
async def server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as srv:
        yield srv


def accepted(server: SmtpServer) -> list[bytes]:
    return [m.data for m in server.messages if m.accepted]


async def test_slow_reply_to_a_terminator_is_maybe_delivered_and_the_rest_go_on(
    server: SmtpServer, autojump_clock: trio.abc.Clock
) -> None:
    server.on("END_OF_DATA", Delay(60), times=1)
    async with client_for(server) as client:
        outcomes = await client.send_many([message(i) for i in range(4)])
    # message 0's terminator was written and its reply timed out: it may have been delivered.
    assert isinstance(outcomes[0], SmtpDeliveryTimeoutError)
    assert isinstance(outcomes[0], SmtpDeliveryUnknownError)
    assert "the end of data" in str(outcomes[0])
    # message 1's envelope went in the same write, never its data.
    assert isinstance(outcomes[1], SmtpConnectError) and "not delivered" in str(outcomes[1])
    assert isinstance(outcomes[1].__cause__, SmtpTimeoutError)
    assert isinstance(outcomes[2], SendResult) and isinstance(outcomes[3], SendResult)
    assert len(server.connections) == 2
    assert accepted(server)[-2:] == [message(2).message, message(3).message]


async def test_slow_mail_reply_is_not_delivered_and_the_rest_go_on(
    server: SmtpServer, autojump_clock: trio.abc.Clock
) -> None:
    server.on("MAIL", Delay(60), times=1)
    async with client_for(server) as client:
        outcomes = await client.send_many([message(i) for i in range(3)])
    assert isinstance(outcomes[0], SmtpConnectError) and "not delivered" in str(outcomes[0])
    assert not isinstance(outcomes[0], SmtpDeliveryUnknownError)
    assert "MAIL" in str(outcomes[0].__cause__)
    assert isinstance(outcomes[1], SendResult) and isinstance(outcomes[2], SendResult)
    assert accepted(server) == [message(1).message, message(2).message]


@pytest.mark.parametrize("verb", ["MAIL", "RCPT", "DATA", "END_OF_DATA"])
async def test_each_phase_has_its_own_budget(
    server: SmtpServer, autojump_clock: trio.abc.Clock, verb: str
) -> None:
    # Every such reply takes 4 s of its 5 s budget: slow, never late, though the batch
    # takes far longer than any one budget.
    server.on(verb, Delay(4), match=None, times=None)
    async with client_for(server) as client:
        outcomes = await client.send_many([message(i) for i in range(3)])
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes
    assert len(server.connections) == 1
    assert trio.current_time() >= 12


async def test_a_slow_async_source_is_not_timed(
    server: SmtpServer, autojump_clock: trio.abc.Clock
) -> None:
    async def slow() -> AsyncIterator[OutgoingMessage]:
        for i in range(3):
            await trio.sleep(60)  # far beyond every budget, between messages
            yield message(i)

    async with client_for(server) as client:
        outcomes = await client.send_many(slow())
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert len(server.connections) == 1
    assert accepted(server) == [message(i).message for i in range(3)]
