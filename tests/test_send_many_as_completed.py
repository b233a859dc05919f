"""send_many_as_completed on SmtpClient and SmtpPool: every outcome handed over as it becomes
known, with its index and item; a cancelled batch loses nothing already known."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from helpers.streams import client_for

from trio_smtp import (
    BatchOutcome,
    OutgoingMessage,
    Security,
    SendResult,
    SmtpFailedRecipientsError,
    SmtpPool,
)
from trio_smtp._delivery.window import WINDOW_MESSAGES
from trio_smtp.testing import Delay, Respond, SmtpServer

FROM = "from@example.org"


def message(i: int) -> OutgoingMessage:
    body = b"Subject: message %d\r\n\r\nbody %d\r\n" % (i, i)
    return OutgoingMessage(body, sender=FROM, recipients=[f"to{i}@example.net"])


@pytest.fixture
async def server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tls="none") as srv:
        yield srv


def senders(server: SmtpServer) -> list[Any]:
    return [
        client_for(server),
        SmtpPool(server.host, server.port, security=Security.NONE, max_connections=3),
    ]


@pytest.mark.parametrize("kind", [0, 1], ids=["client", "pool"])
async def test_every_outcome_once_with_its_item(server: SmtpServer, kind: int) -> None:
    server.on("RCPT", Respond(550, "5.1.1 No"), match="to3@example.net")
    items: list[Any] = [message(i) for i in range(10)]
    items[5] = "not a message"
    got: list[BatchOutcome] = []
    async with senders(server)[kind] as sender:
        async with sender.send_many_as_completed(iter(items)) as outcomes:
            async for done in outcomes:
                got.append(done)
        assert outcomes.unfinished == []
    assert sorted(d.index for d in got) == list(range(10))
    by_index = {d.index: d for d in got}
    assert all(by_index[i].item is items[i] for i in range(10))
    assert isinstance(by_index[3].outcome, SmtpFailedRecipientsError)
    assert isinstance(by_index[5].outcome, TypeError) and not by_index[5].delivered
    assert isinstance(by_index[0].outcome, SendResult) and by_index[0].delivered
    assert len(server.messages) == 8


@pytest.mark.parametrize("kind", [0, 1], ids=["client", "pool"])
async def test_cancelled_batch_loses_nothing_already_known(
    server: SmtpServer, kind: int, autojump_clock: trio.testing.MockClock
) -> None:
    server.on("END_OF_DATA", Delay(1))  # each message takes a second
    got: list[BatchOutcome] = []
    async with senders(server)[kind] as sender:
        # With CHUNKING the outcomes come a window at a time (window.py): cancel once the
        # first window of each connection is known and the second is in flight.
        with trio.move_on_after(1.5 * WINDOW_MESSAGES):
            async with sender.send_many_as_completed(message(i) for i in range(100)) as outcomes:
                async for done in outcomes:
                    got.append(done)
        while True:  # what became known between the last receive and the cancel
            try:
                got.append(outcomes.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        unfinished = outcomes.unfinished
    delivered = {m.recipients[0] for m in server.messages}
    reported = {f"to{d.index}@example.net" for d in got if d.delivered}
    assert got and reported <= delivered
    # Everything the server has is either reported or listed as unfinished (in flight).
    in_flight = {f"to{index}@example.net" for index, _ in unfinished}
    assert delivered <= reported | in_flight
    assert len(got) < 100


@pytest.mark.parametrize("kind", [0, 1], ids=["client", "pool"])
async def test_exception_in_block_cancels_the_batch(
    server: SmtpServer, kind: int, autojump_clock: trio.testing.MockClock
) -> None:
    server.on("END_OF_DATA", Delay(1))
    async with senders(server)[kind] as sender:
        with pytest.raises(KeyError):
            async with sender.send_many_as_completed(message(i) for i in range(100)) as outcomes:
                async for _ in outcomes:
                    raise KeyError("stop")
        # The first outcome comes with the first window (a message a second), not after 100.
        assert trio.current_time() < WINDOW_MESSAGES + 10
    # The server has at most what was answered or in flight when the cancel came: with
    # CHUNKING, the first window of each connection (one for the client, three for the
    # pool) and what of the next was written before the cancel landed -- never all 100.
    connections = 1 if kind == 0 else 3
    assert len(server.messages) <= 2 * connections * WINDOW_MESSAGES < 100


@pytest.mark.parametrize("kind", [0, 1], ids=["client", "pool"])
async def test_an_iterable_that_raises_raises_from_the_iteration(
    server: SmtpServer, kind: int
) -> None:
    def items() -> Any:
        yield message(0)
        raise OSError("the mailbox is unreadable")

    async with senders(server)[kind] as sender:
        got = []
        with pytest.raises(OSError, match="unreadable"):
            async with sender.send_many_as_completed(items()) as outcomes:
                async for done in outcomes:
                    got.append(done)
    assert [d.index for d in got] == [0]
