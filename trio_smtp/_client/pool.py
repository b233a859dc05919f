"""SmtpPool: concurrent sending over several connections to one server.

Theory of operation: the pool is a scheduler over connection slots and contains no SMTP of
its own.  A send *leases* a slot from the pool's :class:`~trio_smtp._client.leasing.Leases`
(an idle one, a new one within the concurrency limit, or the next one given back: see that
module for how slots are kept, retired and reaped); the message then goes as
``SmtpClient.send`` sends it, with the client's reconnect rules (a reused connection found
stale is replaced and the message goes again; nothing is retried once its end of data may
have arrived), and the slot is given back.

Refusals that mean "not now" -- a failed connect, a timeout while connecting, a 4xx greeting
or EHLO (RFC 5321 §3.1: 421 "too many connections"), 421 anywhere, or a 4xx to MAIL -- are
*overload signals*: the concurrency limit drops to the number of connections the server is
taking (at least one), new connections wait for a backoff delay that doubles with each
signal in a row (with jitter, so that many clients do not come back in step), and after
``Backoff.recovery`` seconds without a signal the limit rises by one, up to
``max_connections``.  A message refused by an overload signal was not delivered, so ``send``
tries it again (``Backoff.attempts`` in all) before reporting the refusal.

The rate limit spaces the *start* of messages evenly (one every ``1/rate`` seconds across the
pool): never a burst, even after an idle spell.  ``send_many`` runs one batch per connection
over a shared iterator (each connection pipelines its own messages, as ``SmtpClient.send_many``
does) and returns the outcomes in order; ``send_many_as_completed`` streams them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import ssl
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Literal

import trio

from .._config import DeliveryMethod, Security, Timeouts
from .._credentials import Credentials
from .._delivery.batch_items import BatchItem, Outcome, check_batch_source
from .._delivery.stats import Counters
from .._errors import (
    SmtpError,
    SmtpFailedRecipientsError,
)
from .._io.progress import ProgressCallback
from .._io.transport import StreamFactory
from .._io.url import parse_smtp_url
from .._message.dkim import DkimSigner, choose_signer
from .._message.options import DeliveryNotification, DsnReturn
from .._message.prepare import PreparedMessage
from .._results import SendCompleted, SendResult
from .client import Message_, prepare_outgoing, signed
from .connection_slot import close_body, send_completed
from .leasing import LeasePolicy, Leases
from .pacing import Backoff, RateLimit, overload_signal
from .pool_batch import Batch, BatchHost
from .settings import check_pool_options, session_config
from .streamed import OutcomeStream, RecordedItems, stream_outcomes

__all__ = ["PoolStatistics", "SmtpPool"]

#: ``send_async_cancel()`` without a token: every pending send.
_ALL: Any = object()


@dataclasses.dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of an :class:`SmtpPool` (see its ``statistics()``)."""

    #: Connections open (a session is established), idle or busy.
    connections_open: int = 0
    #: Open connections waiting for a message.
    connections_idle: int = 0
    #: Connections leased by a send (connecting or sending).
    connections_busy: int = 0
    #: How many connections the pool allows now (lower than ``max_connections`` after an
    #: overload signal, until it recovers).
    concurrency_limit: int = 0
    #: Sends waiting for a connection.
    sends_queued: int = 0
    #: Messages being sent (a connection leased, the outcome not yet known).
    sends_in_flight: int = 0
    #: Messages delivered to at least one recipient.
    messages_sent: int = 0
    #: Messages that failed (nobody got them).
    messages_failed: int = 0
    #: Recipients accepted / refused over every message.
    recipients_accepted: int = 0
    recipients_rejected: int = 0
    #: Message data octets of sent messages.
    bytes_sent: int = 0
    #: Connections (sessions) opened, including reconnections.
    connections_opened: int = 0
    #: Messages finished (sent or failed) per second over the last ten seconds.
    rate: float = 0.0


class SmtpPool:
    """Several connections to one server, shared by any number of tasks.

    ``SmtpPool(host=None, port=None, *, max_connections=4, ...)`` takes every
    :class:`SmtpClient` option (``security``, ``credentials``, ``ssl_context``,
    ``local_hostname``, ``timeouts``, ``delivery_method``, ``pickup_directory``,
    ``stream_factory``, ``unix_socket``, ``proxy``, ``dkim``, ``source_address``) with the
    same meaning and checks (every connection goes through the proxy, or leaves from
    ``source_address``; every message is signed as :meth:`SmtpClient.send` signs it), and:

    - ``max_connections`` (4): connections open at once.
    - ``idle_timeout`` (30 s): an idle connection is closed (QUIT) after this long; ``None``
      keeps it until the pool closes.  Servers drop idle sessions too (RFC 5321 §4.5.3.2.7:
      after 5 minutes), which the pool notices and repairs, but closing first is polite.
    - ``max_messages_per_connection`` (100): a connection is closed after this many
      messages and the next send opens a fresh one (many providers cap it); ``None``: no cap.
    - ``rate`` (``None``): at most this many messages per second across the pool, started
      evenly spaced (not in bursts).
    - ``backoff`` (:class:`Backoff`): what the pool does after a failed connect, a 4xx/421
      at connect or a 4xx to MAIL.
    - ``max_pending`` (1000): how many ``send_async`` sends may be unfinished at once; at the
      bound ``send_async`` raises ``trio.WouldBlock`` and :meth:`submit` waits.  ``None``:
      no bound.

    New connections resume the TLS session of the last one when the server allows it (see
    :doc:`/howto/pool`).

    Leaving ``async with`` normally waits for every send started (``send_async`` included)
    and then says QUIT on every connection (shielded, short deadline); leaving it with an
    exception first cancels them, each ``send_async`` still reporting its one
    :class:`SendCompleted`.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        max_connections: int = 4,
        idle_timeout: float | None = 30.0,
        max_messages_per_connection: int | None = 100,
        rate: float | None = None,
        backoff: Backoff | None = None,
        max_pending: int | None = 1000,
        security: Security | None = None,
        credentials: Credentials | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        timeouts: Timeouts | None = None,
        delivery_method: DeliveryMethod = DeliveryMethod.NETWORK,
        pickup_directory: str | os.PathLike[str] | None = None,
        stream_factory: StreamFactory | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        proxy: str | None = None,
        dkim: DkimSigner | None = None,
        source_address: str | None = None,
    ) -> None:
        check_pool_options(max_connections, idle_timeout, max_messages_per_connection, rate)
        if max_pending is not None and max_pending < 1:
            raise ValueError("max_pending must be at least 1 (or None)")
        self._dkim = choose_signer(None, dkim)
        self._config = session_config(
            host,
            port,
            security=security,
            credentials=credentials,
            ssl_context=ssl_context,
            local_hostname=local_hostname,
            timeouts=timeouts,
            delivery_method=delivery_method,
            pickup_directory=pickup_directory,
            stream_factory=stream_factory,
            unix_socket=unix_socket,
            proxy=proxy,
            source_address=source_address,
        )
        pickup = delivery_method is DeliveryMethod.PICKUP_DIRECTORY
        self._pickup_directory = pickup_directory if pickup else None
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_messages_per_connection = max_messages_per_connection
        self.rate = rate
        self.backoff = backoff if backoff is not None else Backoff()
        self.max_pending = max_pending
        self._init_state()

    def _init_state(self) -> None:
        self._counters = Counters()
        self._send_channel, self._completed = trio.open_memory_channel[SendCompleted[Any]](math.inf)
        self._state = "new"  # -> "open" -> "closing" -> "closed"
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None
        policy = LeasePolicy(
            self.max_connections, self.idle_timeout, self.max_messages_per_connection, self.backoff
        )
        self._leases = Leases(policy, self._config, self._counters, self._pickup_directory)
        self._room = trio.lowlevel.ParkingLot()  # submit() waiting under max_pending
        self._rate = RateLimit(self.rate)
        self._in_flight = 0
        self._sends = 0  # sends and batches running (waited for on close)
        self._all_done = trio.Event()
        self._async_scopes: dict[trio.CancelScope, object] = {}

    def __repr__(self) -> str:
        config = self._config
        if self._pickup_directory is not None:
            where = f"pickup_directory={os.fspath(self._pickup_directory)!r}"
        elif config.unix_socket is not None:
            where = f"unix_socket={config.unix_socket!r}"
        else:
            where = f"host={config.host!r} port={config.port}"
        return (
            f"<SmtpPool {where} security={config.security.name} state={self._state} "
            f"connections={self._leases.open_count()}/{self._leases.limit.limit} max_connections="
            f"{self.max_connections}>"
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SmtpPool:
        """As :meth:`SmtpClient.from_url`; keyword arguments add the pool's options."""
        return cls(**{**parse_smtp_url(url), **kwargs})

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool: connections, sends queued and in flight, what is done
        (cheap and synchronous, Trio's ``statistics()`` convention)."""
        counters, leases = self._counters, self._leases
        return PoolStatistics(
            connections_open=leases.connected,
            connections_idle=leases.idle,
            connections_busy=leases.busy,
            concurrency_limit=leases.current_limit(),
            sends_queued=leases.queued,
            sends_in_flight=self._in_flight,
            messages_sent=counters.messages_sent,
            messages_failed=counters.messages_failed,
            recipients_accepted=counters.recipients_accepted,
            recipients_rejected=counters.recipients_rejected,
            bytes_sent=counters.bytes_sent,
            connections_opened=counters.connections_opened,
            rate=0.0 if self._state == "new" else self._rate.rate(),
        )

    # -- lifetime ----------------------------------------------------------------------------

    async def __aenter__(self) -> SmtpPool:
        if self._state != "new":
            raise RuntimeError("an SmtpPool can be entered only once")
        manager = trio.open_nursery()
        self._nursery = await manager.__aenter__()
        self._nursery_manager = manager
        self._leases.start(self._nursery)
        self._state = "open"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leaving normally waits for every send started; with an exception, cancels them
        first (each ``send_async`` still reports one event); then QUIT everywhere."""
        self._state = "closing"
        self._leases.close()
        assert self._nursery_manager is not None and self._nursery is not None
        if exc is not None:
            self.send_async_cancel()
        try:
            while self._sends:
                self._all_done = trio.Event()  # set by _ended (one per wait, not per send)
                await self._all_done.wait()
        finally:
            self.send_async_cancel()  # only if this wait was cancelled: nothing else runs
            try:
                await self._nursery_manager.__aexit__(None, None, None)
            finally:
                self._state = "closed"
                self._send_channel.close()
                await self._leases.aclose()

    @property
    def completed(self) -> trio.MemoryReceiveChannel[SendCompleted[Any]]:
        """One :class:`SendCompleted` per :meth:`send_async`, never dropped (unbounded, as
        :attr:`SmtpClient.completed`; ``max_pending`` bounds the sends behind it)."""
        return self._completed

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self,
        message: Message_,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
        notify: DeliveryNotification | Mapping[str, DeliveryNotification] | None = None,
        ret: DsnReturn | None = None,
        envid: str | None = None,
        orcpt: Mapping[str, str] | None = None,
        requiretls: bool = False,
        dkim: DkimSigner | Literal[False] | None = None,
        progress: ProgressCallback | None = None,
    ) -> SendResult:
        """Send ``message`` on the first free connection and wait for the outcome.

        Takes and raises what :meth:`SmtpClient.send` does, from any number of tasks at
        once: a send waits for a connection instead of raising ``BusyResourceError``, and
        waiting sends get connections in the order they asked.  A
        refusal that is an overload signal (see the class) is retried after the backoff,
        ``Backoff.attempts`` tries in all, for an in-memory message (a streamed body cannot
        be read twice).  Cancelled, it behaves as :meth:`SmtpClient.send`.
        """
        self._check_open()
        prepared = prepare_outgoing(
            message, sender, recipients, notify, ret, envid, orcpt, requiretls
        )
        prepared = signed(prepared, choose_signer(self._dkim, dkim)).with_progress(progress)
        self._started()
        try:
            return await self._send_counted(prepared, _Late())
        finally:
            self._ended()

    def send_async(
        self,
        message: Message_,
        user_token: Any = None,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
        notify: DeliveryNotification | Mapping[str, DeliveryNotification] | None = None,
        ret: DsnReturn | None = None,
        envid: str | None = None,
        orcpt: Mapping[str, str] | None = None,
        requiretls: bool = False,
        dkim: DkimSigner | Literal[False] | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Validate now, send in the pool's nursery, return at once; the outcome arrives as
        one :class:`SendCompleted` on :attr:`completed`.

        Any number may be pending (no one-in-flight rule), up to ``max_pending``: then this
        raises ``trio.WouldBlock`` (nothing is started), and :meth:`submit` waits for room.
        """
        self._check_open()
        prepared = prepare_outgoing(
            message, sender, recipients, notify, ret, envid, orcpt, requiretls
        )
        prepared = signed(prepared, choose_signer(self._dkim, dkim)).with_progress(progress)
        if self.max_pending is not None and len(self._async_scopes) >= self.max_pending:
            raise trio.WouldBlock
        scope = trio.CancelScope()
        self._async_scopes[scope] = user_token
        self._started()
        assert self._nursery is not None
        self._nursery.start_soon(self._run_send_async, prepared, user_token, scope)

    async def submit(self, message: Message_, user_token: Any = None, **options: Any) -> None:
        """:meth:`send_async`, waiting while ``max_pending`` sends are pending (the
        awaitable twin: backpressure for a producer faster than the server)."""
        while True:
            try:
                self.send_async(message, user_token, **options)
            except trio.WouldBlock:
                await self._waiters_for_room()
            else:
                await trio.lowlevel.checkpoint()
                return

    def send_async_cancel(self, user_token: Any = _ALL) -> None:
        """Cancel pending ``send_async`` sends: all of them, or those whose ``user_token``
        equals the one given.  Each reports ``cancelled=True``, or -- too late, its end of
        data was written -- :class:`~trio_smtp.SmtpDeliveryUnknownError`, exactly as
        :meth:`SmtpClient.send_async_cancel` says."""
        for scope, token in list(self._async_scopes.items()):
            if user_token is _ALL or token == user_token:
                scope.cancel()

    async def send_many(
        self, messages: Iterable[BatchItem] | AsyncIterable[BatchItem]
    ) -> list[SendResult | Exception]:
        """:meth:`SmtpClient.send_many`'s contract, spread over the pool's connections: one
        outcome per item, in the order given.

        Each connection pipelines its share of the messages as ``SmtpClient.send_many``
        does; a connection that breaks ends its share (the outcomes of its messages are
        those ``SmtpClient.send_many`` gives) and the others carry on; a new one is opened
        while items remain.  When no connection can be opened, every remaining item gets
        that error.  Cancelled, it raises ``Cancelled``; use
        :meth:`send_many_as_completed` to keep the outcomes already known."""
        results: dict[int, Outcome] = {}
        # Kept as they come (not read from the stream: see stream_outcomes); leaving the
        # block waits for the batch to end, or cancels it.
        async with self._batch(messages, results.__setitem__):
            pass
        return [results[index] for index in range(len(results))]

    @asynccontextmanager
    async def send_many_as_completed(
        self, messages: Iterable[BatchItem] | AsyncIterable[BatchItem]
    ) -> AsyncIterator[OutcomeStream]:
        """As :meth:`SmtpClient.send_many_as_completed`, spread over the pool's connections:
        outcomes in completion order, each with its item's ``index`` and ``item``."""
        async with self._batch(messages) as outcomes:
            yield outcomes

    @asynccontextmanager
    async def _batch(
        self,
        messages: Iterable[BatchItem] | AsyncIterable[BatchItem],
        collect: Callable[[int, Outcome], None] | None = None,
    ) -> AsyncIterator[OutcomeStream]:
        """One batch over the pool's connections, its outcomes streamed or, given
        ``collect``, handed to it (:func:`~trio_smtp._client.streamed.stream_outcomes`)."""
        self._check_open()
        items = RecordedItems(check_batch_source(messages))
        self._started()
        try:
            assert self._nursery is not None
            host = BatchHost(
                max_connections=self.max_connections,
                cap=self.max_messages_per_connection,
                attempts=self.backoff.attempts,
                counters=self._counters,
                dkim=self._dkim,
                pace=self._rate.pace,
                paced=self._rate.per_second is not None,
                lease=self._leases.lease,
                give_back=self._leases.give_back,
                finished=self._batch_outcome,
            )
            run = Batch(host, items).run
            async with stream_outcomes(self._nursery, items, run, collect) as outcomes:
                yield outcomes
        finally:
            self._ended()

    # -- one message -------------------------------------------------------------------------

    async def _run_send_async(
        self, prepared: PreparedMessage, user_token: object, scope: trio.CancelScope
    ) -> None:
        """Exactly one event, decided as :meth:`SmtpClient.send_async`'s (one function,
        :func:`~trio_smtp._client.connection_slot.send_completed`)."""
        error: BaseException | None = None
        result: SendResult | None = None
        late = _Late()
        try:
            with scope:
                result = await self._send_counted(prepared, late)
        except SmtpFailedRecipientsError as exc:
            error, result = exc, exc.result
        except BaseException as exc:
            # An Exception is the send's failure; a cancel from outside (the pool torn down
            # under the caller's cancellation) still sends the event, and propagates.
            error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            event = send_completed(
                user_token,
                scope,
                result,
                error,
                end_of_data_written=late.end_of_data_written,
                counters=self._counters,
                size=prepared.size,
            )
            del self._async_scopes[scope]
            self._ended()
            self._room.unpark()  # room for one submit()
            self._send_channel.send_nowait(event)

    async def _send_counted(self, prepared: PreparedMessage, late: _Late) -> SendResult:
        """One message, counted once whatever the attempts; its body closed at the end."""
        try:
            result = await self._attempts(prepared, late)
        except Exception as exc:
            self._counters.failed(exc, prepared.size)
            self._rate.done()
            raise
        finally:
            await close_body(prepared)
        self._counters.sent(result, prepared.size)
        self._rate.done()
        return result

    async def _attempts(self, prepared: PreparedMessage, late: _Late) -> SendResult:
        attempts = self.backoff.attempts if prepared.body is None else 1
        for attempt in range(1, attempts + 1):
            # An attempt before this one ended with a refusal: nothing of it can arrive.
            late.end_of_data_written = False
            if attempt > 1:  # refused with an overload signal: wait out the backoff
                await self._leases.backoff()
            slot = await self._leases.lease(attempts - attempt + 1)
            connection = slot.connection
            connection.begin_send()
            self._in_flight += 1
            try:
                await self._rate.pace()
                return await connection.deliver_uncounted(prepared)
            except SmtpError as exc:
                if not overload_signal(exc) or attempt == attempts:
                    raise
                self._leases.overloaded()
            finally:
                # Read before the slot goes back: another send may begin on it at once.
                late.end_of_data_written = connection.end_of_data_written
                self._in_flight -= 1
                self._leases.give_back(slot)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- overload signals and submit()'s room ------------------------------------------------

    def _batch_outcome(self, outcome: Outcome) -> None:
        """A message of a ``send_many`` has its outcome: counted, and maybe a signal."""
        self._rate.done()
        if isinstance(outcome, SmtpError) and overload_signal(outcome):
            self._leases.overloaded()

    async def _waiters_for_room(self) -> None:
        await self._room.park()

    # -- state -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state in ("closing", "closed"):
            raise trio.ClosedResourceError("this SmtpPool is closed")
        if self._state == "new":
            raise RuntimeError("use the pool as 'async with SmtpPool(...) as pool:'")

    def _started(self) -> None:
        self._sends += 1

    def _ended(self) -> None:
        self._sends -= 1
        if self._sends == 0:
            self._all_done.set()


@dataclasses.dataclass(slots=True)
class _Late:
    """Whether the last attempt of a send wrote its end of data (for :func:`send_completed`)."""

    end_of_data_written: bool = False
