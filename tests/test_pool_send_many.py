"""SmtpPool.send_many as a bulk sender sees it: every connection pipelines its share (one write
per message, as SmtpClient.send_many), the caller's task sleeps until the batch is over instead
of being woken for each outcome, and the contract of the streamed form it is built on holds --
outcomes in order, the iterable's exception raised once the messages read have finished, a
cancel that leaves the pool usable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio
import trio.testing
from helpers.streams import CountingStream

from trio_smtp import OutgoingMessage, Security, SendResult, SmtpPool
from trio_smtp.testing import Delay, SmtpServer

FROM = "from@example.org"


def message(i: int) -> OutgoingMessage:
    body = b"Subject: message %d\r\n\r\nbody %d\r\n" % (i, i)
    return OutgoingMessage(body, sender=FROM, recipients=[f"to{i}@example.net"])


def pool_for(
    server: SmtpServer, streams: list[CountingStream] | None = None, **options: Any
) -> SmtpPool:
    """A plain-text pool for ``server``; its connections are CountingStreams, appended to
    ``streams``."""

    async def factory() -> trio.abc.Stream:
        stream = CountingStream(await trio.open_tcp_stream(server.host, server.port))
        if streams is not None:
            streams.append(stream)
        return stream

    return SmtpPool(
        server.host, server.port, security=Security.NONE, stream_factory=factory, **options
    )


@pytest.fixture
async def server() -> AsyncIterator[SmtpServer]:
    # No CHUNKING: the DATA path, where one write carries a message's data and terminator
    # and the next message's envelope (RFC 2920 §3.1), as smtp-sink and most relays have it.
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as srv:
        yield srv


class _Steps(trio.abc.Instrument):
    """Counts the times one task is run."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_every_connection_pipelines_its_share(server: SmtpServer) -> None:
    # One write per message on each connection (its data and terminator with the next
    # envelope), plus EHLO, the last terminator and QUIT: never a round trip more per message.
    streams: list[CountingStream] = []
    async with pool_for(server, streams, max_connections=4) as pool:
        outcomes = await pool.send_many([message(i) for i in range(60)])
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert len(server.messages) == 60 and len(streams) > 1
    for stream in streams:
        sent = sum(write.count(b"MAIL FROM:") for write in stream.writes)
        assert sent > 0 and len(stream.writes) <= sent + 3


async def test_the_caller_is_not_woken_for_each_outcome(server: SmtpServer) -> None:
    # send_many wants every outcome at the end: its task sleeps while the connections send.
    # Woken once per outcome (as a reader of send_many_as_completed is), Trio would run it
    # once per scheduling round -- a round per message where each round could decide one per
    # connection: 10-20 % slower on loopback (docs/benchmarks.rst, ``many``).
    instrument = _Steps(trio.lowlevel.current_task())
    async with pool_for(server, max_connections=4) as pool:
        trio.lowlevel.add_instrument(instrument)
        try:
            outcomes = await pool.send_many([message(i) for i in range(60)])
        finally:
            trio.lowlevel.remove_instrument(instrument)
    assert len(outcomes) == 60 and len(server.messages) == 60
    assert instrument.steps < 10


async def test_outcomes_stay_in_order_with_invalid_items(server: SmtpServer) -> None:
    items: list[Any] = [message(i) if i % 7 else OutgoingMessage(b"x") for i in range(30)]
    async with pool_for(server, max_connections=3) as pool:
        outcomes = await pool.send_many(items)
    for i, outcome in enumerate(outcomes):
        if i % 7:
            assert isinstance(outcome, SendResult)
            assert outcome.accepted == (f"to{i}@example.net",)
        else:
            assert isinstance(outcome, (TypeError, ValueError))
    assert len(server.messages) == 30 - 5


async def test_the_iterable_error_is_raised_after_the_messages_read(server: SmtpServer) -> None:
    def items() -> Iterator[OutgoingMessage]:
        yield from (message(i) for i in range(5))
        raise OSError("the mailbox is unreadable")

    async with pool_for(server, max_connections=3) as pool:
        with pytest.raises(OSError, match="unreadable"):
            await pool.send_many(items())
        stats = pool.statistics()
        assert stats.messages_sent == 5 and stats.sends_in_flight == 0
    assert len(server.messages) == 5


async def test_a_cancelled_send_many_leaves_the_pool_usable(
    server: SmtpServer, autojump_clock: trio.testing.MockClock
) -> None:
    server.on("END_OF_DATA", Delay(1))
    async with pool_for(server, max_connections=2) as pool:
        with trio.move_on_after(3.5) as scope:
            await pool.send_many([message(i) for i in range(100)])
        assert scope.cancelled_caught
        assert len(server.messages) < 100
        outcomes = await pool.send_many([message(i) for i in range(4)])
        assert all(isinstance(o, SendResult) for o in outcomes)
