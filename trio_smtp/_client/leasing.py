"""An SmtpPool's connections: leased to one send at a time, kept idle, reaped, limited.

Theory of operation: :class:`Leases` holds the pool's
:class:`~trio_smtp._client.connection_slot.Connection` slots -- the very object an
:class:`~trio_smtp.SmtpClient` drives its one connection with -- and knows no SMTP.  A send
*leases* a slot: an idle one (the most recently used, so that the others reach their idle
time and close), or a new one while fewer than the current concurrency limit are open, or
else it waits in line.  The line is FIFO and nobody overtakes it: a slot given back goes
straight to the first send waiting (not to whoever asks next, which would let a task that
sends in a loop keep its slot while others wait for ever), and a retired slot wakes the first
in line to open a new one.  A new slot connects (greeting, EHLO, STARTTLS, AUTH:
:func:`~trio_smtp._delivery.session.open_session`) before the lease returns it.  Giving the
slot back keeps it idle when nobody waits, or *retires* it -- QUIT, in the pool's nursery --
when it is broken, has sent ``max_messages_per_connection`` messages, is above the limit, or
the pool is closing.  A reaper task closes slots idle for ``idle_timeout``.

The concurrency limit (:class:`~trio_smtp._client.pacing.ConcurrencyLimit`) lives here
because only leasing consults it: an overload signal (:meth:`Leases.overloaded`) lowers it
and retires idle slots above it, a failed connect that is one is tried again after the
backoff delay, and a send waiting for a slot wakes when the limit recovers.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os

import trio

from .._delivery.session import SessionConfig
from .._delivery.stats import Counters
from .._errors import SmtpError
from .connection_slot import Connection
from .pacing import Backoff, ConcurrencyLimit, connect_overload

__all__ = ["LeasePolicy", "Leases", "PooledSlot"]


@dataclasses.dataclass(eq=False, slots=True)
class PooledSlot:
    """A slot of the pool: a connection and its lease bookkeeping."""

    connection: Connection
    idle_since: float = 0.0
    #: Transactions done when the current lease began (for the per-connection cap).
    messages_at_lease: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The pool's settings that decide how slots are leased, kept and retired."""

    max_connections: int
    idle_timeout: float | None
    #: ``max_messages_per_connection``, or None.
    cap: int | None
    backoff: Backoff


class Leases:
    """The slots of one pool, leased to sends (see the module)."""

    def __init__(
        self,
        policy: LeasePolicy,
        config: SessionConfig,
        counters: Counters,
        pickup_directory: str | os.PathLike[str] | None,
    ) -> None:
        self.policy = policy
        self._config = config
        self._counters = counters
        self._pickup_directory = pickup_directory
        self.limit = ConcurrencyLimit(policy.max_connections)
        self._idle: list[PooledSlot] = []
        self._busy: set[PooledSlot] = set()
        self._queue: collections.deque[_Waiter] = collections.deque()  # FIFO of waiting sends
        #: Sends waiting for a slot now.
        self.queued = 0
        self._nursery: trio.Nursery | None = None
        self._open = False
        self._reaper_scope: trio.CancelScope | None = None

    # -- what statistics() and repr() show ---------------------------------------------------

    @property
    def idle(self) -> int:
        """Open slots waiting for a send."""
        return len(self._idle)

    @property
    def busy(self) -> int:
        """Slots leased (connecting or sending)."""
        return len(self._busy)

    @property
    def connected(self) -> int:
        """Slots with a session open, idle or busy."""
        return len(self._idle) + sum(1 for slot in self._busy if slot.connection.connected)

    def open_count(self) -> int:
        """Slots held, connected or about to be."""
        return len(self._idle) + len(self._busy)

    def current_limit(self) -> int:
        """The concurrency limit, recovering while the pool is open."""
        if not self._open:
            return self.limit.limit
        backoff = self.policy.backoff
        return self.limit.recover(self.policy.max_connections, backoff.recovery)

    # -- lifetime ----------------------------------------------------------------------------

    def start(self, nursery: trio.Nursery) -> None:
        """Open for leases; QUITs and the idle reaper run in ``nursery``."""
        self._nursery = nursery
        self._open = True
        nursery.start_soon(self._reap_idle)

    def close(self) -> None:
        """The pool is closing: slots given back from now on are retired, none reaped."""
        self._open = False
        if self._reaper_scope is not None:
            self._reaper_scope.cancel()

    async def aclose(self) -> None:
        """QUIT on every connection at once, shielded, each with its own short deadline."""
        self._nursery = None  # the pool's nursery has exited: nothing more starts in it
        slots, self._idle = [*self._idle, *self._busy], []
        self._busy.clear()
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for slot in slots:
                    nursery.start_soon(slot.connection.aclose)

    # -- leases ------------------------------------------------------------------------------

    async def backoff(self) -> None:
        """Wait out the backoff delay of the last overload signal (if it has not passed).

        Without a delay pending nothing is awaited (a lease checkpoints anyway): sleeping
        until a past time still enters a cancel scope and raises and catches its Cancelled,
        ~16 us on every new connection."""
        not_before = self.limit.not_before
        if not_before > trio.current_time():
            await trio.sleep_until(not_before)

    async def lease(self, attempts: int) -> PooledSlot:
        """A slot with an open session (or a pickup slot): an idle one, a new one within the
        limit, or the next one given back.  Connect failures that are overload signals are
        tried ``attempts`` times in all, each after the backoff delay."""
        for attempt in range(1, attempts + 1):
            slot = await self._acquire()
            if slot.connection.ready:
                return slot
            try:
                await self.backoff()
                await slot.connection.connect()
            except SmtpError as exc:
                self.give_back(slot)
                if not connect_overload(exc) or attempt == attempts:
                    raise
                self.overloaded()
                continue
            except BaseException:
                self.give_back(slot)
                raise
            self.limit.signals = 0
            return slot
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self) -> PooledSlot:
        await trio.lowlevel.checkpoint_if_cancelled()
        slot = None if self._queue else self._take()
        if slot is None:
            self.queued += 1
            try:
                slot = await self._wait_in_line()
            finally:
                self.queued -= 1
        slot.messages_at_lease = slot.connection.messages
        return slot

    async def _wait_in_line(self) -> PooledSlot:
        """Wait at the back of the line until :meth:`give_back` hands this send a slot, or
        it is first in line when there is room for a new one (a slot was retired, or the
        limit recovered: the first in line is woken for that, and checks)."""
        waiter = _Waiter()
        self._queue.append(waiter)
        try:
            while True:
                with trio.move_on_at(self._next_recovery()):
                    await waiter.woken.wait()
                if waiter.slot is not None:
                    return waiter.slot
                if self._queue[0] is waiter and (slot := self._take()) is not None:
                    self._queue.popleft()
                    self._wake_first()  # room for one more, maybe
                    return slot
                self._wake_first()  # woken by the recovery time: the limit may have risen
                waiter.woken = trio.Event()
        except BaseException:
            if waiter.slot is not None:  # handed a slot as it was cancelled: the next one's
                self.give_back(waiter.slot)
            elif waiter in self._queue:
                self._queue.remove(waiter)
                self._wake_first()
            raise

    def _next_recovery(self) -> float:
        """When the limit may next rise (it rises only while open: :meth:`current_limit`)."""
        if not self._open:
            return math.inf
        backoff = self.policy.backoff
        return self.limit.next_recovery(self.policy.max_connections, backoff.recovery)

    def _wake_first(self) -> None:
        """Wake the first send in line if there may be room for a new slot (it checks)."""
        if self._queue and self.open_count() < self.current_limit():
            self._queue[0].woken.set()

    def _take(self) -> PooledSlot | None:
        if self._idle:
            slot = self._idle.pop()  # the most recently used: the others may idle out
        elif self.open_count() < self.current_limit():
            slot = self._new_slot()
        else:
            return None
        self._busy.add(slot)
        return slot

    def _new_slot(self) -> PooledSlot:
        connection = Connection(
            self._config, self._counters, pickup_directory=self._pickup_directory
        )
        return PooledSlot(connection)

    def give_back(self, slot: PooledSlot) -> None:
        """A lease ends: hand the slot to the first send in line, or keep it idle, or retire
        it (broken, capped, over the limit, the pool closing).  Handing it over (instead of
        letting whoever asks next take it) keeps the queue FIFO: a task that gives a slot
        back and asks again at once would otherwise keep it while others wait forever."""
        self._busy.discard(slot)
        connection = slot.connection
        cap = self.policy.cap
        capped = cap is not None and connection.messages >= cap
        # Closing, a usable slot still serves the sends in line (leaving the block waits
        # for every send started); only with nobody waiting is it retired.
        if (
            not connection.ready
            or capped
            or (not self._open and not self._queue)
            or self.open_count() >= self.current_limit()
        ):
            self._retire(slot)
            self._wake_first()
        elif self._queue:
            waiter = self._queue.popleft()
            waiter.slot = slot
            self._busy.add(slot)
            waiter.woken.set()
        else:
            slot.idle_since = trio.current_time()
            self._idle.append(slot)
            idle_timeout = self.policy.idle_timeout
            if self._reaper_scope is not None and idle_timeout is not None:
                expiry = slot.idle_since + idle_timeout
                if expiry < self._reaper_scope.deadline:
                    self._reaper_scope.deadline = expiry

    def _retire(self, slot: PooledSlot) -> None:
        # QUIT, shielded and short, in the pool's nursery -- also while the pool is closing
        # (its nursery outlives every send), so that the slot no longer counts against the
        # limit and a send still in line can open a new one.
        if slot.connection.connected and self._nursery is not None:
            self._nursery.start_soon(slot.connection.aclose)

    def overloaded(self) -> None:
        """An overload signal: fewer connections for a while (idle ones above the new limit
        retired), and a backoff delay before new ones."""
        taking = sum(1 for slot in (*self._idle, *self._busy) if slot.connection.connected)
        self.limit.lower(self.current_limit(), taking, self.policy.backoff)
        while len(self._idle) > self.limit.limit:
            self._retire(self._idle.pop(0))
        for waiter in self._queue:  # each waits for the limit's next recovery, now sooner
            waiter.woken.set()

    # -- idle reaping ------------------------------------------------------------------------

    async def _reap_idle(self) -> None:
        """Close connections idle for longer than ``idle_timeout`` (QUIT)."""
        while self._open:  # closing: aclose() says QUIT
            with trio.CancelScope(deadline=self._next_expiry()) as scope:
                self._reaper_scope = scope
                await trio.sleep_forever()
            self._reaper_scope = None
            if not self._open:
                return
            now = trio.current_time()
            idle_timeout = self.policy.idle_timeout
            assert idle_timeout is not None
            expired = [s for s in self._idle if s.idle_since + idle_timeout <= now]
            self._idle = [s for s in self._idle if s not in expired]
            for slot in expired:
                self._retire(slot)

    def _next_expiry(self) -> float:
        if self.policy.idle_timeout is None or not self._idle:
            return math.inf
        return min(slot.idle_since for slot in self._idle) + self.policy.idle_timeout


@dataclasses.dataclass(eq=False, slots=True)
class _Waiter:
    """A send waiting in line for a slot."""

    woken: trio.Event = dataclasses.field(default_factory=trio.Event)
    #: The slot :meth:`Leases.give_back` handed over (leased: in the busy set already).
    slot: PooledSlot | None = None
