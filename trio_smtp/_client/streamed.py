"""Streamed outcomes: ``send_many_as_completed``, the form of ``send_many`` that hands each
message's outcome over the moment it is known.

Theory of operation: Trio forbids yielding from inside a nursery in an async generator (the
generator's consumer would run inside the nursery's scope), so the batch runs as a task in
the client's or pool's own nursery and its outcomes travel over a memory channel; the caller
gets an async context manager whose value, an :class:`OutcomeStream`, iterates over that
channel.  Each outcome is put on the channel by :class:`~trio_smtp._delivery.batch_items.Outcomes`
the moment the batch decides it, so outcomes are in completion order and one that is known
is never lost: a caller cancelled while iterating finds every outcome decided before the
cancel still on the stream (:meth:`OutcomeStream.receive_nowait`), and the items that were
read but have no outcome in :attr:`OutcomeStream.unfinished`.

The channel is unbounded on purpose (as ``completed`` is): the batch must never wait for a
slow reader, or a reader that stops to write a report would stall every connection.  Its size
is bounded by the number of items (one small object each).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._delivery.batch_items import Outcome, SyncItems

__all__ = ["BatchOutcome", "OutcomeStream", "RecordedItems", "stream_outcomes"]

#: Hand one outcome over: the item's index (its position in the iterable) and its outcome.
Emit = Callable[[int, Outcome], None]


@dataclasses.dataclass(frozen=True, slots=True)
class BatchOutcome:
    """One message's outcome from ``send_many_as_completed``.

    ``index`` is the item's position in the iterable given (0 for the first), ``item`` the
    item itself, ``outcome`` what ``send_many`` would have put at that position: the
    :class:`~trio_smtp.SendResult`, or the exception ``send`` would have raised.
    """

    index: int
    item: Any
    outcome: Outcome

    @property
    def delivered(self) -> bool:
        """True when at least one recipient got the message (a ``SendResult``, or a
        :class:`~trio_smtp.SmtpFailedRecipientsError` with a ``result``)."""
        outcome = self.outcome
        return not isinstance(outcome, Exception) or getattr(outcome, "result", None) is not None


class RecordedItems:
    """The batch's items as an async iterator, remembering each item read by its index."""

    def __init__(self, items: AsyncIterator[object]) -> None:
        self._items = items
        #: Every item read so far; an item's index is its position here.
        self.read: list[object] = []
        #: Indexes of the items that have an outcome.
        self.done: set[int] = set()
        # Several connections of a pool read one iterator.  Taking an item from a sync
        # iterable never waits (Trio runs one task at a time and a sync next() has no
        # checkpoint), so it is taken in place; only an async iterable, whose __anext__
        # may wait, needs the lock.
        self._sync = items if isinstance(items, SyncItems) else None
        self._lock = None if self._sync is not None else trio.Lock()
        self.exhausted = False
        #: What the iterable raised, if it did (it then counts as exhausted).
        self.error: Exception | None = None
        self._returned: list[tuple[int, object]] = []

    def __aiter__(self) -> RecordedItems:
        return self

    @property
    def may_block(self) -> bool:
        """Whether reading the next item may wait (an async iterable)."""
        return self._lock is not None

    async def __anext__(self) -> object:
        next_item = await self.next()
        if next_item is None:
            raise StopAsyncIteration
        return next_item[1]

    def give_back(self, entry: tuple[int, object]) -> None:
        """An item taken by :meth:`next` and not sent: the next call returns it again."""
        self._returned.append(entry)

    async def next(self) -> tuple[int, object] | None:
        """The next item and its index, or None once the iterable is exhausted."""
        if self._lock is not None:
            async with self._lock:
                return await self._next()
        # A cancel point as the lock's acquire is, without its trip through the scheduler;
        # then the item in place, with no coroutine per item (it is taken once a message).
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._returned:
            return self._returned.pop()
        if self.exhausted:
            return None
        assert self._sync is not None
        try:
            item = self._sync.next_nowait(_END)
        except Exception as exc:
            item = self._broke(exc)
        return self._record(item)

    async def _next(self) -> tuple[int, object] | None:
        """:meth:`next` of an async iterable, with it to itself (no other reader can
        interleave)."""
        if self._returned:
            return self._returned.pop()
        if self.exhausted:
            return None
        try:
            item = await anext(self._items, _END)
        except Exception as exc:
            item = self._broke(exc)
        return self._record(item)

    def _broke(self, error: Exception) -> object:
        """The iterable raised: no more items, but the messages already read finish and
        report; the error is raised once they have (stream_outcomes)."""
        self.error = error
        return _END

    def _record(self, item: object) -> tuple[int, object] | None:
        if item is _END:
            self.exhausted = True
            return None
        self.read.append(item)
        return len(self.read) - 1, item


_END = object()


class OutcomeStream:
    """What ``async with ...send_many_as_completed(items) as outcomes`` gives: an async
    iterator of :class:`BatchOutcome`, in completion order, ending when every item has its
    outcome."""

    def __init__(
        self, receive: trio.MemoryReceiveChannel[BatchOutcome], items: RecordedItems
    ) -> None:
        self._receive = receive
        self._items = items
        self._error: BaseException | None = None

    def __aiter__(self) -> OutcomeStream:
        return self

    async def __anext__(self) -> BatchOutcome:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            self._raise_error()
            raise StopAsyncIteration from None

    def receive_nowait(self) -> BatchOutcome:
        """The next outcome already known, without waiting (``trio.WouldBlock`` if none yet,
        ``trio.EndOfChannel`` once all are received): after a cancel, drain what is known."""
        return self._receive.receive_nowait()

    @property
    def unfinished(self) -> list[tuple[int, Any]]:
        """``(index, item)`` of every item read from the iterable that has no outcome yet.

        After a cancel these are the messages in flight at that moment: each one may have
        been delivered (its end of data may have been written) or not; items never read from
        the iterable are not listed."""
        items = self._items
        return [(i, item) for i, item in enumerate(items.read) if i not in items.done]

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error


@asynccontextmanager
async def stream_outcomes(
    nursery: trio.Nursery,
    items: RecordedItems,
    run: Callable[[Emit], Awaitable[None]],
    collect: Emit | None = None,
) -> AsyncIterator[OutcomeStream]:
    """Run ``run(emit)`` in ``nursery`` and stream what it emits (see the module docstring).

    Leaving the block normally waits for the batch to end (outcomes not read are dropped);
    leaving it with an exception (a cancel included) cancels the batch first.  An exception
    of the iterable ends the batch: the messages already read finish and report, then it is
    raised at the end of the iteration (or on leaving the block).

    ``collect``, if given, is handed each outcome instead of the stream, which then yields
    none: ``send_many``, which wants them all at the end, leaves the block at once and
    pays no object, no channel and -- above all -- no wake-up of its task per message.  A
    reader of the stream is woken once per outcome, and Trio runs a woken task once per
    scheduling round: with many connections each round decides several outcomes, so a
    reader one outcome a round behind would hold the batch to a round per message."""
    send, receive = trio.open_memory_channel[BatchOutcome](math.inf)
    stream = OutcomeStream(receive, items)
    scope = trio.CancelScope()
    finished = trio.Event()

    def emit(index: int, outcome: Outcome) -> None:
        items.done.add(index)
        if collect is not None:
            collect(index, outcome)
        else:
            send.send_nowait(BatchOutcome(index, items.read[index], outcome))

    async def runner() -> None:
        try:
            with scope:
                await run(emit)
            if items.error is not None:
                raise items.error
        except Exception as exc:  # handed to the caller, never into the nursery
            stream._error = exc
        finally:
            send.close()
            finished.set()

    nursery.start_soon(runner)
    try:
        yield stream
    except BaseException:
        scope.cancel()
        raise
    finally:
        try:
            await finished.wait()
        finally:
            if not finished.is_set():  # cancelled while waiting: stop the batch
                scope.cancel()
                # Bounded: once cancelled, the batch only closes its connections
                # (shielded, short deadlines).
                with trio.CancelScope(shield=True):
                    await finished.wait()
    stream._raise_error()
