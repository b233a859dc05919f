"""What ``send_many`` takes and gives back: its items, read and validated one at a time, and
one outcome per item, in order (see :mod:`trio_smtp._delivery.batch` for how they are sent)."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from email.message import EmailMessage, Message
from typing import Literal, TypeVar

import trio

from .._errors import SmtpError
from .._message.dkim import DkimSigner, choose_signer, sign_prepared
from .._message.options import DeliveryNotification, DsnReturn
from .._message.prepare import PreparedMessage, prepare_message, with_delivery_options
from .._results import SendResult
from .stats import Counters

_T = TypeVar("_T")

__all__ = [
    "BatchItem",
    "Outcome",
    "Outcomes",
    "OutgoingMessage",
    "Pending",
    "Source",
    "SyncItems",
    "check_batch_source",
    "prepare_item",
]


#: What a message in a batch came to: its result, or the exception ``send`` would raise.
Outcome = SendResult | Exception


@dataclasses.dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message of :meth:`SmtpClient.send_many <trio_smtp.SmtpClient.send_many>` with its
    own envelope: ``message`` (an :class:`~email.message.EmailMessage` or ``bytes``),
    ``sender`` and ``recipients`` (required for bytes; for an ``EmailMessage`` they
    override its headers, as with :meth:`~trio_smtp.SmtpClient.send`).

    The keyword-only options are those of :meth:`~trio_smtp.SmtpClient.send`: DSN
    (RFC 3461) ``notify``, ``ret``, ``envid``, ``orcpt``, and ``requiretls`` (RFC 8689).
    They are validated when the item is sent: a bad one is that item's outcome
    (``TypeError``/``ValueError``, nothing of it written), and so is an option the server
    cannot honour (the :class:`~trio_smtp.SmtpError` ``send`` raises, before its MAIL).
    ``dkim`` is as :meth:`~trio_smtp.SmtpClient.send`'s."""

    message: EmailMessage | bytes
    sender: str | None = None
    recipients: Sequence[str] | None = None
    _: dataclasses.KW_ONLY
    notify: DeliveryNotification | Mapping[str, DeliveryNotification] | None = None
    ret: DsnReturn | None = None
    envid: str | None = None
    orcpt: Mapping[str, str] | None = None
    requiretls: bool = False
    #: A :class:`~trio_smtp.DkimSigner` for this message, ``False`` for none, or None for
    #: the client's.
    dkim: DkimSigner | Literal[False] | None = None


#: What ``send_many`` takes: items of a (sync or async) iterable.
BatchItem = EmailMessage | bytes | OutgoingMessage


def prepare_item(item: object, dkim: DkimSigner | None = None) -> PreparedMessage:
    """Validate one item (TypeError/ValueError, nothing written); in-memory messages only.
    ``dkim``: the client's signer, for items that do not choose their own."""
    if isinstance(item, OutgoingMessage):
        message: object = item.message
        sender, recipients = item.sender, item.recipients
        dkim = choose_signer(dkim, item.dkim)
    else:
        message, sender, recipients = item, None, None
    if not isinstance(message, (Message, bytes, bytearray, memoryview)):
        raise TypeError(
            "send_many takes EmailMessage, bytes or OutgoingMessage items, not "
            f"{type(message).__name__} (stream large bodies with send())"
        )
    prepared = prepare_message(message, sender, recipients)
    if dkim is not None:
        prepared = sign_prepared(prepared, dkim)
    if not isinstance(item, OutgoingMessage):
        return prepared
    return with_delivery_options(  # the same object when no option is given
        prepared,
        notify=item.notify,
        ret=item.ret,
        envid=item.envid,
        orcpt=item.orcpt,
        requiretls=item.requiretls,
    )


def check_batch_source(messages: object) -> AsyncIterator[object]:
    """An async iterator over ``messages``; TypeError for a single message or a
    non-iterable (checked before anything is claimed or written)."""
    if isinstance(messages, (Message, bytes, bytearray, memoryview, str, OutgoingMessage)):
        raise TypeError("send_many takes an iterable of messages; use send() for one")
    if isinstance(messages, AsyncIterable):
        return aiter(messages)
    if isinstance(messages, Iterable):
        return SyncItems(messages)
    raise TypeError(f"send_many takes an iterable of messages, not {type(messages).__name__}")


class SyncItems:
    """A sync iterable's items as an async iterator.  Getting one never awaits anything,
    so no deadline can fire while it is read (see :meth:`_PipelinedSender.run`)."""

    __slots__ = ("_items", "_iterator")
    #: Reading an item never waits (see :class:`Source`).
    may_block = False

    def __init__(self, items: Iterable[object]) -> None:
        self._items = items
        self._iterator: Iterator[object] | None = None

    def __aiter__(self) -> SyncItems:
        return self

    async def __anext__(self) -> object:
        if self._iterator is None:
            self._iterator = iter(self._items)  # lazily, as a generator would
        try:
            return next(self._iterator)
        except StopIteration:
            raise StopAsyncIteration from None

    def next_nowait(self, default: _T) -> object | _T:
        """The next item, or ``default`` once there are none: what ``anext(self, default)``
        gives, without a coroutine (a pool's connections read one shared iterator)."""
        if self._iterator is None:
            self._iterator = iter(self._items)
        return next(self._iterator, default)


class Outcomes:
    """The outcome of each message, in the order given (one slot per item).

    ``on_set(slot, outcome)``, if given, is told each outcome the moment it is known (the
    streamed form of ``send_many`` hands it to the caller from there); it must not block.
    """

    def __init__(
        self, counters: Counters, on_set: Callable[[int, Outcome], None] | None = None
    ) -> None:
        self._slots: list[Outcome | None] = []
        self._counters = counters
        self._on_set = on_set

    def reserve(self) -> int:
        self._slots.append(None)
        return len(self._slots) - 1

    def set(self, slot: int, outcome: Outcome, size: int | None = None) -> None:
        """Record ``slot``'s outcome, counted in the client's statistics as ``send``'s
        would be (an invalid item, refused before any I/O, is not counted)."""
        assert self._slots[slot] is None, "one outcome per message"
        self._slots[slot] = outcome
        if isinstance(outcome, SendResult):
            self._counters.sent(outcome, size)
        elif isinstance(outcome, SmtpError):
            self._counters.failed(outcome, size)
        if self._on_set is not None:
            self._on_set(slot, outcome)

    def result(self) -> list[Outcome]:
        assert all(outcome is not None for outcome in self._slots)
        return [outcome for outcome in self._slots if outcome is not None]


class Pending:
    """A message read from the source and validated, not yet sent (or to be retried)."""

    __slots__ = ("prepared", "slot")

    def __init__(self, slot: int, prepared: PreparedMessage) -> None:
        self.slot = slot
        self.prepared = prepared


class Source:
    """The items, prepared one at a time, with push-back: messages that go again, in the
    order pushed, before any new item (a reused connection found dead before its MAIL was
    answered; the messages of a window behind a 421).

    An async iterable may make its reader wait (a database, a rate limit, or a source that
    waits for an earlier message's outcome before it yields the next).  Inside
    :meth:`reading_ahead` its items are read by a task of their own, so that :meth:`next`
    can tell whether the next item is already there: if it is not, ``before_wait`` runs
    first -- the sender finishes what is in flight -- and only then does it wait.  Waiting
    with a message unfinished would keep the server inside its transaction for as long as
    the source takes, and hold back the outcome such a source waits for (a deadlock).
    """

    def __init__(
        self, items: AsyncIterator[object], outcomes: Outcomes, dkim: DkimSigner | None = None
    ) -> None:
        self._items = items
        self._outcomes = outcomes
        self._dkim = dkim
        self._back: deque[Pending] = deque()
        self._ahead: trio.MemoryReceiveChannel[object] | None = None
        self.exhausted = False
        #: False when reading an item cannot wait on anything (a sync iterable: the
        #: iterator says so with a ``may_block`` attribute; any other async one may).
        self.may_block: bool = getattr(items, "may_block", True)

    def push_back(self, pending: Pending) -> None:
        self._back.append(pending)

    async def reading_ahead(self, body: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``body`` with the items of a source that may wait read by a task of their
        own (one item ahead); a sync source is read in place.

        Neither task raises inside the nursery (design rule 9): the reader hands what the
        iterable raised over as an item, and what ``body`` raised -- a cancel included --
        is raised here, alone, once the reader is stopped."""
        if not self.may_block:
            return await body()
        send, receive = trio.open_memory_channel[object](0)
        result: list[_T] = []
        raised: list[BaseException] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_ahead, send)
            self._ahead = receive
            try:
                result.append(await body())
            except BaseException as exc:  # raised below, never inside the nursery
                raised.append(exc)
            finally:
                self._ahead = None
                nursery.cancel_scope.cancel()
        if raised:
            raise raised[0]
        return result[0]

    async def _read_ahead(self, send: trio.MemorySendChannel[object]) -> None:
        """The reader task: never raises (a cancel -- ours when the batch ends, or one from
        outside, which the body then raises -- just ends it)."""
        try:
            while True:
                try:
                    item = await anext(self._items, _END)
                except Exception as exc:  # the iterable's: raised by next(), in order
                    item = _Raised(exc)
                await send.send(item)
                if item is _END or isinstance(item, _Raised):
                    return
        except (trio.Cancelled, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            send.close()  # not aclose(): a checkpoint there would raise a cancel

    async def next(
        self, before_wait: Callable[[], Awaitable[None]] | None = None
    ) -> Pending | None:
        """The next valid message; an invalid one gets its error as its outcome.
        ``before_wait`` runs before waiting for an item that is not there yet."""
        if self._back:
            return self._back.popleft()
        while not self.exhausted:
            if self._ahead is None:  # read in place (the usual case: no extra await layer)
                item = await anext(self._items, _END)
            else:
                item = await self._next_ahead(self._ahead, before_wait)
            if item is _END:
                self.exhausted = True
                break
            slot = self._outcomes.reserve()
            try:
                return Pending(slot, prepare_item(item, self._dkim))
            except (TypeError, ValueError) as exc:
                self._outcomes.set(slot, exc)
        return None

    async def _next_ahead(
        self,
        ahead: trio.MemoryReceiveChannel[object],
        before_wait: Callable[[], Awaitable[None]] | None,
    ) -> object:
        try:
            try:
                item = ahead.receive_nowait()
            except trio.WouldBlock:
                if before_wait is not None:
                    await before_wait()
                item = await ahead.receive()
        except trio.EndOfChannel:  # the reader ended (the iterable raised before)
            return _END
        if isinstance(item, _Raised):
            raise item.error
        return item


class _Raised:
    """What the iterable raised, handed over by the reader as an item."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


_END = object()
