"""send_many with a source that waits: what is in flight is finished first.

A message's data (and, with CHUNKING, the replies of the window) wait for the next message
so that they can share its write.  When the next item is not there yet -- an async source
reading a database, a rate limit, or one that waits for an earlier outcome before it yields
the next (a feedback loop over ``send_many_as_completed``) -- waiting for it with a message
unfinished would leave the server inside DATA for as long as the source takes (servers time
that out) and hold back the outcome the source may be waiting for: a deadlock.  So before
waiting on the source, the sender finishes what is in flight.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from trio_smtp import OutgoingMessage, Security, SmtpClient, SmtpPool
from trio_smtp.testing import SmtpServer

FROM = "a@example.org"


def item(i: int) -> OutgoingMessage:
    return OutgoingMessage(
        b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i), sender=FROM, recipients=["b@example.net"]
    )


#: Without CHUNKING (data pipelined with the next envelope) and with it (the window).
SERVERS = pytest.mark.parametrize("disable", [{"CHUNKING"}, set()], ids=["data", "window"])


@SERVERS
async def test_a_source_that_waits_for_an_outcome_gets_it(disable: set[str]) -> None:
    known = [trio.Event() for _ in range(4)]

    async def items() -> AsyncIterator[OutgoingMessage]:
        for i in range(4):
            yield item(i)
            await known[i].wait()  # the next one once this one's outcome is known

    async with (
        SmtpServer(tls="none", disable=disable) as server,
        SmtpClient(server.host, server.port, security=Security.NONE) as client,
    ):
        with trio.fail_after(30):
            async with client.send_many_as_completed(items()) as outcomes:
                async for done in outcomes:
                    assert not isinstance(done.outcome, Exception), done.outcome
                    known[done.index].set()
    assert [m.data.split(b"\r\n")[0] for m in server.messages] == [
        b"Subject: %d" % i for i in range(4)
    ]


@SERVERS
async def test_a_slow_source_does_not_keep_the_server_waiting_in_the_transaction(
    autojump_clock: trio.testing.MockClock, disable: set[str]
) -> None:
    seen: list[int] = []
    async with SmtpServer(tls="none", disable=disable) as server:

        async def items() -> AsyncIterator[OutgoingMessage]:
            for i in range(3):
                yield item(i)
                await trio.sleep(600)  # longer than a server waits for data
                seen.append(len(server.messages))

        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            results = await client.send_many(items())
    assert all(not isinstance(r, Exception) for r in results), results
    assert seen == [1, 2, 3]  # each message delivered before the source was waited on


async def test_the_pool_does_the_same(autojump_clock: trio.testing.MockClock) -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        pool = SmtpPool(server.host, server.port, security=Security.NONE, max_connections=2)
        async with pool:
            known = [trio.Event() for _ in range(6)]

            async def items() -> AsyncIterator[OutgoingMessage]:
                for i in range(6):
                    yield item(i)
                    await known[i].wait()

            with trio.fail_after(30):
                async with pool.send_many_as_completed(items()) as outcomes:
                    async for done in outcomes:
                        assert not isinstance(done.outcome, Exception), done.outcome
                        known[done.index].set()
    assert len(server.messages) == 6
