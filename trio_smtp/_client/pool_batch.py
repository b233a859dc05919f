r"""``SmtpPool.send_many``: one batch spread over the pool's connections.

Theory of operation: a :class:`Batch` runs one worker per connection over the batch's shared
item reader (:class:`~trio_smtp._client.streamed.RecordedItems`).  A worker takes an item
first and leases a connection only for an item in hand, so a small batch opens few
connections and an empty one none; each worker that finds work starts the next, up to
``max_connections``.  On its connection a worker sends a :class:`Share`: that first item, then
more from the shared reader, paced by the rate limit, pipelined as ``SmtpClient.send_many``
pipelines them, until the items run out, the connection breaks or it reaches its cap; then it
leases again.  A worker that cannot lease gives its item back for another; the last one left
gives every remaining item that error.  What the batch needs from its pool -- leases, pacing,
counters, the overload rules -- comes as a :class:`BatchHost`; its slots are
:class:`~trio_smtp._client.leasing.PooledSlot`\ s, as the pool's leases keep them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import trio

from .._delivery.batch_items import Outcome, Outcomes
from .._delivery.stats import Counters
from .._errors import SmtpError
from .._message.dkim import DkimSigner
from .leasing import PooledSlot
from .streamed import Emit, RecordedItems

__all__ = ["Batch", "BatchHost", "Share"]


@dataclasses.dataclass(frozen=True, slots=True)
class BatchHost:
    """What a batch uses of its pool (read when the batch starts)."""

    #: Workers (connections) at most.
    max_connections: int
    #: Messages per connection (``max_messages_per_connection``), or None.
    cap: int | None
    #: Tries to open a connection (``Backoff.attempts``).
    attempts: int
    counters: Counters
    dkim: DkimSigner | None
    #: The rate limit: wait for the next message's start.
    pace: Callable[[], Awaitable[None]]
    #: A rate limit is set (``pace`` may wait).
    paced: bool
    #: A slot with an open session, tried ``attempts`` times.
    lease: Callable[[int], Awaitable[PooledSlot]]
    give_back: Callable[[PooledSlot], None]
    #: Told each message's outcome (the rate statistics, overload signals).
    finished: Callable[[Outcome], None]


class Batch:
    """One ``send_many`` over the pool: a share of the items per connection."""

    def __init__(self, host: BatchHost, items: RecordedItems) -> None:
        self.host = host
        self.items = items
        self.workers = 0  # running
        self.started = 0
        self.emit: Emit | None = None
        self.spawn: Callable[[], None] = lambda: None

    async def run(self, emit: Emit) -> None:
        """Workers, one per connection, ramped up: each one that takes an item starts the
        next (up to ``max_connections``), and a connection is leased only for an item in
        hand, so a small batch opens few connections and an empty one none.  The
        first exception that is not an outcome stops them all and is raised alone, never
        in a group."""
        self.emit = emit
        error: list[Exception] = []
        async with trio.open_nursery() as nursery:

            async def worker() -> None:
                try:
                    await self.worker()
                except Exception as exc:
                    error.append(exc)
                    nursery.cancel_scope.cancel()

            def spawn() -> None:
                if self.started < self.host.max_connections:
                    self.started += 1
                    self.workers += 1
                    nursery.start_soon(worker)

            self.spawn = spawn
            spawn()
        if error:
            raise error[0]

    async def worker(self) -> None:
        """Take an item, then a connection for it (none for an empty batch), and send
        items on it until they run out, it breaks or reaches its cap; then again."""
        host = self.host
        try:
            while True:
                await host.pace()
                first = await self.items.next()
                if first is None:
                    return
                self.spawn()  # there was work for this one: maybe for one more
                try:
                    slot = await host.lease(host.attempts)
                except SmtpError as exc:
                    self.items.give_back(first)  # for another connection, if any is left
                    if self.workers == 1:  # nobody else can send them
                        await self.fail_the_rest(exc)
                    return
                try:
                    await self.share(slot, first)
                finally:
                    host.give_back(slot)
        finally:
            self.workers -= 1

    async def share(self, slot: PooledSlot, first: tuple[int, object]) -> None:
        """Send ``first`` and more items on ``slot``."""
        share = Share(self, slot, first)
        assert self.emit is not None
        emit, finished = self.emit, self.host.finished

        def on_set(local: int, outcome: Outcome) -> None:
            finished(outcome)
            emit(share.indexes[local], outcome)

        outcomes = Outcomes(self.host.counters, on_set)
        await slot.connection.send_many(share, outcomes, dkim=self.host.dkim)

    async def fail_the_rest(self, error: SmtpError) -> None:
        assert self.emit is not None
        while (next_item := await self.items.next()) is not None:
            self.host.counters.failed(error, None)
            self.emit(next_item[0], error)


class Share:
    """The items one connection sends: ``first``, then more from the batch's shared
    iterator, paced by the rate limit; it ends when the connection is gone or has sent its
    cap."""

    def __init__(self, batch: Batch, slot: PooledSlot, first: tuple[int, object]) -> None:
        self.batch = batch
        self.slot = slot
        self._first: tuple[int, object] | None = first
        #: The batch index of each item this share read (its local slot -> its index).
        self.indexes: list[int] = []

    def __aiter__(self) -> Share:
        return self

    @property
    def may_block(self) -> bool:
        """Whether taking the next item may wait: an async iterable, or the rate limit
        (see :class:`~trio_smtp._delivery.batch_items.Source`)."""
        return self.batch.items.may_block or self.batch.host.paced

    async def __anext__(self) -> object:
        next_item, self._first = self._first, None
        if next_item is None:
            host, connection = self.batch.host, self.slot.connection
            cap = host.cap
            read = self.slot.messages_at_lease + len(self.indexes)
            if not connection.ready or (cap is not None and read >= cap):
                raise StopAsyncIteration
            if host.paced:
                await host.pace()
            next_item = await self.batch.items.next()
            if next_item is None:
                raise StopAsyncIteration
        self.indexes.append(next_item[0])
        return next_item[1]
