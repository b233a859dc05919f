"""SmtpPool against the testing server: many tasks on one pool, per-connection caps, the rate
limit, backoff and recovery after 421 "too many connections", replacement of broken and
idle-closed connections, send_async with backpressure, closing with and without an error."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_smtp import (
    Backoff,
    DeliveryMethod,
    OutgoingMessage,
    Security,
    SendResult,
    SmtpClient,
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpPool,
    SmtpResponseError,
)
from trio_smtp._client.leasing import LeasePolicy, Leases, PooledSlot
from trio_smtp._delivery.stats import Counters
from trio_smtp.testing import Delay, Hangup, Respond, SmtpServer

FROM = "from@example.org"


def message(i: int) -> OutgoingMessage:
    body = b"Subject: message %d\r\n\r\nbody %d\r\n" % (i, i)
    return OutgoingMessage(body, sender=FROM, recipients=[f"to{i}@example.net"])


def pool_for(server: SmtpServer, **options: Any) -> SmtpPool:
    return SmtpPool(server.host, server.port, security=Security.NONE, **options)


async def send_one(pool: SmtpPool, i: int) -> SendResult:
    m = message(i)
    return await pool.send(m.message, sender=m.sender, recipients=m.recipients)


@pytest.fixture
async def server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tls="none") as srv:
        yield srv


async def test_many_tasks_share_the_connections(server: SmtpServer) -> None:
    server.on("END_OF_DATA", Delay(0.01))  # keep connections busy so others are opened
    results: list[SendResult] = []
    async with pool_for(server, max_connections=3) as pool:

        async def one(i: int) -> None:
            m = message(i)
            results.append(await pool.send(m.message, sender=m.sender, recipients=m.recipients))

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(one, i)
        stats = pool.statistics()
    assert len(results) == 30 and len(server.messages) == 30
    assert len(server.connections) == 3  # reused, never more than max_connections
    assert stats.messages_sent == 30 and stats.connections_opened == 3
    assert stats.sends_in_flight == 0 and stats.sends_queued == 0


async def test_a_waiting_send_is_not_overtaken_by_a_busy_task(server: SmtpServer) -> None:
    # One connection, one task sending in a loop: a send that arrives while the connection
    # is busy gets it next (the queue is FIFO), not after the loop runs out.
    sent = 0
    first_sent = trio.Event()
    async with pool_for(server, max_connections=1) as pool:

        async def busy_task() -> None:
            nonlocal sent
            for i in range(20):
                await send_one(pool, i)
                sent += 1
                first_sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(busy_task)
            await first_sent.wait()
            before = sent
            await send_one(pool, 100)
            waited_for = sent - before
    assert waited_for <= 1  # the send in progress when this one queued, no more


async def test_a_send_cancelled_as_it_is_handed_a_slot_passes_it_on(tmp_path: Path) -> None:
    # The lease queue itself (pickup slots need no server): B is cancelled and, before it
    # runs again, the slot it waited for is handed to it; it must pass the slot to C.
    policy = LeasePolicy(max_connections=1, idle_timeout=None, cap=None, backoff=Backoff())
    config = SmtpPool(
        delivery_method=DeliveryMethod.PICKUP_DIRECTORY, pickup_directory=tmp_path
    )._config
    leases = Leases(policy, config, Counters(), tmp_path)
    got: dict[str, PooledSlot] = {}
    async with trio.open_nursery() as nursery:
        leases.start(nursery)
        held = await leases.lease(1)
        scope_b = trio.CancelScope()

        async def wait(name: str, scope: trio.CancelScope) -> None:
            with scope:
                got[name] = await leases.lease(1)

        nursery.start_soon(wait, "b", scope_b)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait, "c", trio.CancelScope())
        await trio.testing.wait_all_tasks_blocked()
        scope_b.cancel()
        leases.give_back(held)  # B is still first in line
        await trio.testing.wait_all_tasks_blocked()
        assert list(got) == ["c"] and got["c"] is held
        assert leases.busy == 1 and leases.idle == 0 and leases.queued == 0
        leases.close()
    await leases.aclose()


async def test_send_many_spreads_over_connections_in_order(server: SmtpServer) -> None:
    server.on("END_OF_DATA", Delay(0.01))
    async with pool_for(server, max_connections=4) as pool:
        outcomes = await pool.send_many([message(i) for i in range(40)])
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert [o.accepted for o in outcomes if isinstance(o, SendResult)] == [
        (f"to{i}@example.net",) for i in range(40)
    ]
    assert len(server.messages) == 40
    assert 1 < len(server.connections) <= 4


async def test_send_many_shares_an_async_iterable_that_waits(server: SmtpServer) -> None:
    # Several connections read one async iterable whose __anext__ waits: each item is read
    # once and sent once, in order (the shared reader keeps its lock for async iterables;
    # a sync iterable's next() cannot wait, so it needs none).
    async def items() -> AsyncIterator[Any]:
        for i in range(20):
            await trio.sleep(0.001)
            yield message(i)

    server.on("END_OF_DATA", Delay(0.01))
    async with pool_for(server, max_connections=4) as pool:
        outcomes = await pool.send_many(items())
    assert [o.accepted for o in outcomes if isinstance(o, SendResult)] == [
        (f"to{i}@example.net",) for i in range(20)
    ]
    assert len(server.messages) == 20


async def test_send_many_reports_invalid_items_in_place(server: SmtpServer) -> None:
    items: list[Any] = [message(0), OutgoingMessage(b"x"), message(2)]
    async with pool_for(server, max_connections=2) as pool:
        outcomes = await pool.send_many(items)
    assert isinstance(outcomes[0], SendResult) and isinstance(outcomes[2], SendResult)
    assert isinstance(outcomes[1], ValueError)


async def test_per_connection_cap_reconnects(server: SmtpServer) -> None:
    async with pool_for(server, max_connections=1, max_messages_per_connection=3) as pool:
        for i in range(7):
            await pool.send(message(i).message, sender=FROM, recipients=["a@example.net"])
        outcomes = await pool.send_many([message(i) for i in range(7)])
    assert all(isinstance(o, SendResult) for o in outcomes)
    # 7 sends: 3 + 3 + 1; then the batch: the connection with 1 takes 2 more, then 3, 2.
    assert [len(c.messages) for c in server.connections] == [3, 3, 3, 3, 2]
    assert all(c.commands[-1].verb == "QUIT" for c in server.connections)


async def test_rate_limit_spaces_messages_evenly(
    server: SmtpServer, autojump_clock: trio.testing.MockClock
) -> None:
    starts: list[float] = []

    def note(argument: str) -> bool:
        starts.append(trio.current_time())
        return False

    server.on("MAIL", Respond(550, "never"), match=note)
    async with pool_for(server, max_connections=4, rate=2.0) as pool:
        begin = trio.current_time()
        await trio.sleep(100)  # idle a long time: no burst of saved-up tokens afterwards
        async with trio.open_nursery() as nursery:
            for i in range(6):
                m = message(i)
                nursery.start_soon(pool.send_many, [m])
    assert len(starts) == 6
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.5 - 1e-6 for gap in gaps), gaps
    assert starts[0] - begin >= 100


async def test_421_too_many_connections_backs_off_then_recovers(
    server: SmtpServer, autojump_clock: trio.testing.MockClock
) -> None:
    server.on("END_OF_DATA", Delay(1))
    # The server takes two sessions; the next three attempts get 421 at the greeting.
    refusals = 0

    def third_and_later(_: str) -> bool:
        nonlocal refusals
        if server.statistics().open_connections > 2 and refusals < 3:
            refusals += 1
            return True
        return False

    server.on("GREETING", Respond(421, "4.7.0 Too many connections"), match=third_and_later)
    backoff = Backoff(first=1.0, maximum=4.0, attempts=4, recovery=30.0)
    async with pool_for(server, max_connections=4, backoff=backoff) as pool:
        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(send_one, pool, i)
        lowered = pool.statistics().concurrency_limit
        await trio.sleep(200)  # long enough without a refusal: the limit comes back
        recovered = pool.statistics().concurrency_limit
    assert len(server.messages) == 12  # nobody saw the refusals: they were retried
    assert refusals >= 1 and lowered < 4 and recovered == 4


async def test_the_limit_recovers_while_sends_wait_in_line(
    server: SmtpServer, autojump_clock: trio.testing.MockClock
) -> None:
    # One 4xx to MAIL lowers the limit to one connection while 40 sends wait; each recovery
    # period opens one more connection for the sends still waiting, up to max_connections.
    server.on("END_OF_DATA", Delay(1))
    refused = 0

    def first_only(_: str) -> bool:
        nonlocal refused
        refused += 1
        return refused == 1

    server.on("MAIL", Respond(451, "4.7.1 Slow down"), match=first_only)
    backoff = Backoff(first=0.1, maximum=0.1, attempts=4, recovery=5.0)
    lowest_limit, busiest_after = 4, 0  # connections busy while sends wait, after the signal
    async with pool_for(server, max_connections=4, backoff=backoff) as pool:

        async def watch() -> None:
            nonlocal lowest_limit, busiest_after
            while True:
                stats = pool.statistics()
                lowest_limit = min(lowest_limit, stats.concurrency_limit)
                if lowest_limit < 4 and stats.sends_queued:
                    busiest_after = max(busiest_after, stats.connections_busy)
                await trio.sleep(0.5)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            async with trio.open_nursery() as senders:
                for i in range(40):
                    senders.start_soon(send_one, pool, i)
            nursery.cancel_scope.cancel()
    assert len(server.messages) == 40
    assert lowest_limit < 4 and busiest_after == 4


async def test_connect_failures_exhaust_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with SmtpServer(tls="none") as server:
        server.on("GREETING", Respond(421, "4.7.0 Go away"))
        backoff = Backoff(first=1.0, maximum=2.0, attempts=3)
        async with pool_for(server, backoff=backoff) as pool:
            begin = trio.current_time()
            with pytest.raises(SmtpConnectError, match="Go away"):
                await pool.send(message(0).message, sender=FROM, recipients=["a@example.net"])
            waited = trio.current_time() - begin
            outcomes = await pool.send_many([message(i) for i in range(3)])
        assert len(server.connections) >= 3
    assert waited >= 1.0  # at least two jittered delays of >= 0.5 s
    assert all(isinstance(o, SmtpConnectError) for o in outcomes)


async def test_broken_connection_is_replaced() -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        async with pool_for(server, max_connections=1) as pool:
            await send_one(pool, 0)
            server.on("MAIL", Hangup(), times=1)  # the reused connection dies before MAIL
            await send_one(pool, 1)  # stale: replaced, the message goes again
            server.on("END_OF_DATA", Hangup(), times=1)
            with pytest.raises(SmtpDeliveryUnknownError):
                await send_one(pool, 2)  # may have been delivered: never retried
            await send_one(pool, 3)
        # The server kept message 2 before hanging up: it was delivered, and sent once.
        assert [m.recipients for m in server.messages] == [[f"to{i}@example.net"] for i in range(4)]
        assert len(server.connections) == 3


async def test_a_new_connection_that_dies_at_mail_is_not_stale() -> None:
    # Design rule 12 sends a message again only when a connection used before is found
    # dead: the server may have closed it while idle.  A connection the pool has just
    # opened for this send was not idle, so its death is the server's answer (as for
    # SmtpClient): reported, not hidden behind a second connection.
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("MAIL", Hangup(), times=1)
        async with pool_for(server, max_connections=1) as pool:
            with pytest.raises(SmtpConnectError):
                await send_one(pool, 0)
            assert pool.statistics().connections_opened == 1
            await send_one(pool, 1)  # the next send opens a new one
        assert len(server.connections) == 2
        assert [m.recipients for m in server.messages] == [["to1@example.net"]]
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("MAIL", Hangup(), times=1)
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            with pytest.raises(SmtpConnectError):
                await client.send(message(0).message, sender=FROM, recipients=["a@example.net"])
            assert client.statistics().connections_opened == 1


async def test_idle_connections_are_closed(
    server: SmtpServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with pool_for(server, max_connections=2, idle_timeout=10) as pool:
        await pool.send(message(0).message, sender=FROM, recipients=["a@example.net"])
        assert pool.statistics().connections_idle == 1
        await trio.sleep(11)
        assert pool.statistics().connections_open == 0
        assert server.connections[0].commands[-1].verb == "QUIT"
        await pool.send(message(1).message, sender=FROM, recipients=["a@example.net"])
    assert len(server.connections) == 2


async def test_server_closed_idle_connection_is_replaced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with SmtpServer(tls="none", idle_timeout=5) as server:
        async with pool_for(server, max_connections=1, idle_timeout=None) as pool:
            await pool.send(message(0).message, sender=FROM, recipients=["a@example.net"])
            await trio.sleep(10)  # the server says 421 and closes
            await pool.send(message(1).message, sender=FROM, recipients=["a@example.net"])
        assert len(server.messages) == 2 and len(server.connections) == 2


async def test_send_async_many_in_flight_and_backpressure(server: SmtpServer) -> None:
    server.on("END_OF_DATA", Delay(0.05))
    async with pool_for(server, max_connections=2, max_pending=3) as pool:
        for i in range(3):
            pool.send_async(message(i).message, i, sender=FROM, recipients=["a@example.net"])
        with pytest.raises(trio.WouldBlock):
            pool.send_async(message(3).message, 3, sender=FROM, recipients=["a@example.net"])
        for i in range(3, 8):
            await pool.submit(message(i).message, i, sender=FROM, recipients=["a@example.net"])
    events = [event async for event in pool.completed]
    assert sorted(e.user_token for e in events) == list(range(8))
    assert all(e.error is None and not e.cancelled for e in events)


@pytest.mark.parametrize("cap", [None, 1])
async def test_leaving_the_block_serves_the_sends_still_waiting_for_a_connection(
    autojump_clock: trio.testing.MockClock, cap: int | None
) -> None:
    # Sends still in line when the block ends are served, on the connection given back or
    # (capped: it is retired) on a new one -- not left waiting for a slot forever.
    server = SmtpServer(tls="none")
    server.on("END_OF_DATA", Delay(1))
    async with server:
        with trio.fail_after(60):
            async with pool_for(server, max_connections=1, max_messages_per_connection=cap) as pool:
                for i in range(3):
                    pool.send_async(
                        message(i).message, i, sender=FROM, recipients=["a@example.net"]
                    )
                await trio.sleep(0.1)  # one send in flight, two in line
                assert pool.statistics().sends_queued == 2
        events = [event async for event in pool.completed]
    assert sorted(e.user_token for e in events) == [0, 1, 2]
    assert all(e.error is None and not e.cancelled for e in events)
    assert len(server.messages) == 3
    assert len(server.connections) == (3 if cap == 1 else 1)


async def test_leaving_with_an_exception_cancels_every_send(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # No CHUNKING: the data goes only after 354, so a cancel during RCPT stops the send.
    server = SmtpServer(tls="none", disable={"CHUNKING"})
    server.on("RCPT", Delay(100))
    with pytest.raises(KeyError):
        async with server, pool_for(server, max_connections=2) as pool:
            for i in range(5):
                pool.send_async(message(i).message, i, sender=FROM, recipients=["a@example.net"])
            await trio.sleep(1)
            raise KeyError("boom")
    events = [event async for event in pool.completed]
    assert sorted(e.user_token for e in events) == list(range(5))
    assert all(e.cancelled and e.error is None for e in events)
    assert trio.current_time() < 100
    assert server.messages == []


async def test_send_async_cancel_by_token(autojump_clock: trio.testing.MockClock) -> None:
    server = SmtpServer(tls="none", disable={"CHUNKING"})
    server.on("RCPT", Delay(10))
    async with server, pool_for(server, max_connections=2) as pool:
        pool.send_async(message(0).message, "keep", sender=FROM, recipients=["a@example.net"])
        pool.send_async(message(1).message, "drop", sender=FROM, recipients=["a@example.net"])
        await trio.sleep(1)
        pool.send_async_cancel("drop")
    events = {e.user_token: e async for e in pool.completed}
    assert events["drop"].cancelled and not events["keep"].cancelled
    assert events["keep"].result is not None


async def test_send_async_cancelled_after_end_of_data_is_maybe_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The decision SmtpClient.send_async makes (one function for both): once the end of
    # data is written, a cancel cannot take the message back.
    server = SmtpServer(tls="none")
    server.on("END_OF_DATA", Delay(100))
    async with server, pool_for(server) as pool:
        pool.send_async(message(0).message, "late", sender=FROM, recipients=["a@example.net"])
        await trio.sleep(1)
        pool.send_async_cancel()
    [event] = [e async for e in pool.completed]
    assert not event.cancelled and event.result is None
    assert isinstance(event.error, SmtpDeliveryUnknownError)
    assert pool.statistics().messages_failed == 1


async def test_a_cancel_before_the_next_transaction_is_a_cancel(
    autojump_clock: trio.testing.MockClock, server: SmtpServer
) -> None:
    # The connection's last send wrote its end of data; the next send, cancelled while it
    # waits for the rate limit on that connection, wrote nothing: cancelled, not unknown.
    async with pool_for(server, max_connections=1, rate=0.1) as pool:
        await send_one(pool, 0)
        pool.send_async(message(1).message, "next", sender=FROM, recipients=["a@example.net"])
        await trio.sleep(1)
        assert pool.statistics().connections_busy == 1  # leased, pacing
        pool.send_async_cancel()
    [event] = [e async for e in pool.completed]
    assert event.cancelled and event.error is None
    assert len(server.messages) == 1


async def test_closed_pool_refuses(server: SmtpServer) -> None:
    pool = pool_for(server)
    with pytest.raises(RuntimeError):
        await pool.send(b"x", sender=FROM, recipients=["a@example.net"])
    async with pool:
        assert "state=open" in repr(pool)
    with pytest.raises(trio.ClosedResourceError):
        await pool.send(b"x", sender=FROM, recipients=["a@example.net"])
    assert repr(pool).startswith(f"<SmtpPool host={server.host!r} port={server.port}")
    assert "state=closed" in repr(pool)


def test_options_are_checked() -> None:
    bads: list[dict[str, Any]] = [
        {"max_connections": 0},
        {"rate": 0},
        {"idle_timeout": 0},
        {"max_messages_per_connection": 0},
        {"max_pending": 0},
    ]
    for bad in bads:
        with pytest.raises(ValueError):
            SmtpPool("localhost", 25, **bad)
    with pytest.raises(ValueError):
        Backoff(attempts=0)
    with pytest.raises(ValueError):
        SmtpPool("localhost", 0)  # every SmtpClient check applies
    pool = SmtpPool.from_url("smtp://localhost:2525?tls=none", max_connections=2)
    assert pool.max_connections == 2 and "port=2525" in repr(pool)


async def test_a_small_batch_opens_few_connections(server: SmtpServer) -> None:
    async with pool_for(server, max_connections=8) as pool:
        outcomes = await pool.send_many([message(0), message(1)])
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert len(server.connections) <= 2  # a connection only for an item in hand
    async with pool_for(server, max_connections=8) as pool:
        assert await pool.send_many([]) == []
    assert len(server.connections) <= 2  # none for an empty batch


async def test_statistics_while_busy(
    server: SmtpServer, autojump_clock: trio.testing.MockClock
) -> None:
    server.on("END_OF_DATA", Delay(5))
    async with pool_for(server, max_connections=2) as pool:
        for i in range(5):
            pool.send_async(message(i).message, i, sender=FROM, recipients=["a@example.net"])
        await trio.sleep(1)
        busy = pool.statistics()
        await trio.sleep(20)
        done = pool.statistics()
    assert busy.connections_open == 2 and busy.connections_busy == 2
    assert busy.sends_in_flight == 2 and busy.sends_queued == 3
    assert busy.messages_sent == 0 and busy.concurrency_limit == 2
    assert done.messages_sent == 5 and done.sends_in_flight == done.sends_queued == 0
    assert done.connections_idle == 2 and done.connections_busy == 0
    assert done.rate > 0


async def test_4xx_to_mail_backs_off_and_retries(
    server: SmtpServer, autojump_clock: trio.testing.MockClock
) -> None:
    server.on("MAIL", Respond(451, "4.7.1 Slow down"), times=2)
    async with pool_for(server, max_connections=1, backoff=Backoff(first=5.0)) as pool:
        begin = trio.current_time()
        result = await send_one(pool, 0)
        waited = trio.current_time() - begin
        stats = pool.statistics()
    assert result.accepted == ("to0@example.net",)
    assert waited >= 2.5  # a jittered backoff before the retry on a new connection
    assert stats.messages_sent == 1 and stats.messages_failed == 0


async def test_permanent_refusal_is_not_retried(server: SmtpServer) -> None:
    server.on("MAIL", Respond(550, "5.7.1 Not you"))
    async with pool_for(server) as pool:
        with pytest.raises(SmtpResponseError, match="Not you"):
            await send_one(pool, 0)
    assert len([c for c in server.connections[0].commands if c.verb == "MAIL"]) == 1


async def test_4xx_after_mail_is_not_an_overload_signal(server: SmtpServer) -> None:
    # Only a 4xx to MAIL (SmtpResponseError.command) or a 421 says "not now": a 4xx to the
    # end of data is that message's own outcome, reported at once.
    server.on("END_OF_DATA", Respond(452, "4.3.1 Out of storage"))
    async with pool_for(server, backoff=Backoff(first=5.0)) as pool:
        with pytest.raises(SmtpResponseError, match="Out of storage") as caught:
            await send_one(pool, 0)
        assert pool.statistics().concurrency_limit == 4  # not lowered
    assert caught.value.command == "end of data"
    assert len([c for c in server.connections[0].commands if c.verb == "MAIL"]) == 1


async def test_pickup_directory_pool(tmp_path: Path) -> None:
    async with SmtpPool(
        delivery_method=DeliveryMethod.PICKUP_DIRECTORY, pickup_directory=tmp_path
    ) as pool:
        outcomes = await pool.send_many([message(i) for i in range(3)])
        await send_one(pool, 3)
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert len(list(await trio.Path(tmp_path).glob("*.eml"))) == 4
