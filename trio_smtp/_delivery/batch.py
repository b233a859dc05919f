"""Bulk sending: many messages over one connection, pipelined across messages.

Theory of operation: RFC 2920 §3.1 lets the transfer of message content be the *first*
"command" of a group, so with PIPELINING (and no CHUNKING) message k's data and terminator,
then message k+1's MAIL, RCPTs and DATA, go in ONE write.  Its replies come back in order:
the reply to k's terminator (k's outcome), then k+1's envelope replies up to 354.  One round
trip per message instead of two.

Transactions stay independent: after the end-of-data reply the session is READY whatever its
code (RFC 5321 §4.1.1.4); a transaction that failed before its data with MAIL accepted
(every RCPT refused, DATA refused) leaves the server inside a transaction, so RSET goes
first in the next write (RFC 5321 §4.1.1.5); a 354 nobody should get is answered with the
terminator alone (RFC 2920 §3.1), and its reply is read and ignored.

Each message gets exactly one outcome, in order: a :class:`SendResult`, or the exception a
:meth:`SmtpClient.send <trio_smtp.SmtpClient.send>` would have raised.  When the connection
breaks (or a reply is malformed), the message whose terminator's write completed and whose
reply was not read is :class:`SmtpDeliveryUnknownError` (if that write itself failed, the
terminator never wholly left: that message is not delivered, with the write's error); the
message whose envelope was in the same write is *not delivered* (:class:`SmtpConnectError`);
the client reconnects for the rest.

With CHUNKING and PIPELINING, small messages go through a window of transactions in flight
(:mod:`trio_smtp._delivery.window`: each message in one write, many writes before the first
reply); a message that does not go in one write, and every message without PIPELINING, goes
as :func:`deliver` sends it.  This module only chooses; the transaction is the engine's.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
)
from typing import Literal

from .._errors import (
    SmtpError,
    SmtpProtocolError,
    SmtpResponseError,
    SmtpTimeoutError,
)
from .._io.data import DATA_CHUNK
from .._io.deadlines import Phases
from .._io.transport import Transport
from .._message.dkim import DkimSigner
from .._message.prepare import PreparedMessage
from .._results import SendResult
from ..protocol import Reply, Rset
from .batch_items import Outcome, Outcomes, Pending, Source
from .outcome import (
    ConnectionStaleError,
    after_data,
    check_not_closing,
    maybe_delivered,
    not_delivered,
)
from .stats import Counters
from .transaction import DATA, EnvelopeCommands, Transaction, check_server
from .window import send_windowed

__all__ = ["send_batch", "send_pipelined"]


class _Awaiting:
    """What the reply to the first command of the next write decides.

    ``final``: a message's terminator (its outcome); ``rset``: RSET after a failed
    envelope; neither: a terminator answering a 354 nobody should get (ignored)."""

    __slots__ = ("final", "rset")

    def __init__(
        self, final: tuple[Pending, Transaction] | None = None, rset: bool = False
    ) -> None:
        self.final = final
        self.rset = rset


async def send_batch(
    items: AsyncIterator[object],
    counters: Counters,
    deliver_one: Callable[[PreparedMessage], Awaitable[SendResult]],
    connection: Callable[[], Awaitable[Transport]] | None,
    drop_connection: Callable[[], Awaitable[None]],
    outcomes: Outcomes | None = None,
    *,
    dkim: DkimSigner | None = None,
    commands: EnvelopeCommands | None = None,
) -> list[Outcome]:
    """The body of :meth:`SmtpClient.send_many <trio_smtp.SmtpClient.send_many>`: one
    outcome per item, in order.

    The client lends its ways to the server: ``deliver_one`` sends one message as ``send``
    does, ``connection`` returns its reusable session (opening one if needed; ``None`` for
    a pickup directory), ``drop_connection`` discards a session that is no longer usable.
    ``outcomes`` (built on ``counters``) is given by a caller that watches them as they come.
    ``dkim`` signs every item that does not choose its own signer.  ``commands``: the
    client's :class:`~trio_smtp._delivery.transaction.EnvelopeCommands`, shared with its
    ``send`` (None: one for this batch).
    """
    if outcomes is None:
        outcomes = Outcomes(counters)
    memo = commands if commands is not None else EnvelopeCommands()
    source = Source(items, outcomes, dkim)
    return await source.reading_ahead(
        lambda: _send_all(source, outcomes, deliver_one, connection, drop_connection, memo)
    )


async def _send_all(
    source: Source,
    outcomes: Outcomes,
    deliver_one: Callable[[PreparedMessage], Awaitable[SendResult]],
    connection: Callable[[], Awaitable[Transport]] | None,
    drop_connection: Callable[[], Awaitable[None]],
    commands: EnvelopeCommands,
) -> list[Outcome]:
    pending = await source.next()  # no connection for an empty batch
    while pending is not None:
        if connection is None:  # a pickup directory: one file per message
            await _send_one(deliver_one, pending, outcomes)
            pending = await source.next()
            continue
        try:
            transport = await connection()
        except SmtpError as exc:
            await _fail_the_rest(source, outcomes, pending, exc)
            break
        retry: Pending | None = None
        one: Pending | None = pending
        try:
            extensions = transport.extensions
            if extensions.pipelining and not extensions.chunking:
                retry = await send_pipelined(transport, source, outcomes, pending, commands)
                one = None
            elif extensions.pipelining:
                one = await send_windowed(transport, source, outcomes, pending)
        finally:
            if not transport.reusable:
                await drop_connection()
        if one is not None:
            await _send_one(deliver_one, one, outcomes)
        pending = retry or await source.next()
    return outcomes.result()


async def _send_one(
    deliver_one: Callable[[PreparedMessage], Awaitable[SendResult]],
    pending: Pending,
    outcomes: Outcomes,
) -> None:
    """Without PIPELINING, or with CHUNKING (where ``send`` already puts a small
    message and its envelope in one write): one message as ``send`` sends it."""
    size = pending.prepared.size
    try:
        result = await deliver_one(pending.prepared)
    except (SmtpError, OSError) as exc:
        outcomes.set(pending.slot, exc, size)
    else:
        outcomes.set(pending.slot, result, size)


async def _fail_the_rest(
    source: Source, outcomes: Outcomes, pending: Pending | None, error: SmtpError
) -> None:
    """No connection could be opened: every message left gets that error (not sent)."""
    while pending is not None:
        outcomes.set(pending.slot, error, pending.prepared.size)
        pending = await source.next()


async def send_pipelined(
    transport: Transport,
    source: Source,
    outcomes: Outcomes,
    first: Pending,
    commands: EnvelopeCommands,
) -> Pending | None:
    """Send messages from ``source`` on ``transport`` (PIPELINING, no CHUNKING) until the
    source ends or the connection breaks; return a message that must go first on the next
    connection (``ConnectionStaleError``), if any.

    One :class:`~trio_smtp._io.deadlines.Phases` scope covers the whole connection, its
    deadline moved at each write and read (entering a scope per write and per read was a
    tenth of the client's time per message); it is disarmed while the source is read, so
    a slow source is never timed.  A phase that times out unwinds to that scope as
    Cancelled and comes out as the same SmtpTimeoutError a per-phase scope raises; the
    sender then gives the messages involved the outcomes that error gets anywhere else."""
    sender = _PipelinedSender(transport, outcomes, commands)
    try:
        with transport.phases() as phases:
            return await sender.run(source, first, phases)
    except SmtpError as exc:  # only a phase's deadline: every other error is handled inside
        sender.timed_out(exc)
        return None


class _PipelinedSender:
    def __init__(
        self, transport: Transport, outcomes: Outcomes, commands: EnvelopeCommands
    ) -> None:
        self.transport = transport
        self.outcomes = outcomes
        self.tail = b""  # goes first in the next write: data + terminator, or RSET
        # What ends the tail -- the terminator or RSET -- is encoded only right before the
        # write, after a look at what the server already sent: until then the machine
        # knows nothing more is owed, and takes anything that came as an early reply or as
        # unsolicited, never as the answer to what is about to go (design rules 10, 11).
        self.finish: Literal["end_data", "rset"] | None = None
        self.awaiting: _Awaiting | None = None
        # Where a timeout of the connection's Phases scope finds us: the message whose
        # envelope is in the write being made or answered (not delivered if it fails),
        # and whether that write (carrying the tail) completed.
        self._in_flight: Pending | None = None
        self._written = False
        # The commands of the last message, for the next one if it needs the same.
        self._commands = commands

    async def run(self, source: Source, first: Pending, phases: Phases) -> Pending | None:
        """The loop of :func:`send_pipelined`, inside its Phases scope."""
        pending: Pending | None = first

        async def finish_in_flight() -> None:
            await self._finish_in_flight(phases)

        while pending is not None:
            try:
                retry = await self.send(pending)
            except SmtpError:
                return None  # the connection broke: every message involved has its outcome
            if retry:
                return pending
            # Whatever its outcome, the next message finds this connection used before:
            # found dead before anything was accepted, it is stale (design rule 12).
            self.transport.mark_reused()
            pending = await source.next(before_wait=finish_in_flight)
            if pending is not None and self.transport.broken:
                return pending  # finishing what was in flight broke it: a new connection
        try:
            await self.flush()
        except SmtpError:
            pass  # the last message's outcome is set
        return None

    async def _finish_in_flight(self, phases: Phases) -> None:
        """The next message is not there yet (see :class:`Source`): the data and terminator
        that wait for it go now and their reply is read, so that the server is not kept
        inside DATA and the outcome is known while the source takes its time (which is no
        phase: not timed).  A failure gives the outcomes it gives anywhere and breaks the
        connection: :meth:`run` then hands the next message back, for a new one."""
        try:
            await self.flush()
        except SmtpError:
            pass  # the outcome is set; the transport is marked broken
        phases.arm(None, "the next message", SmtpTimeoutError)

    def timed_out(self, error: SmtpError) -> None:
        """A phase's deadline passed (see :func:`send_pipelined`): the outcomes a failed
        write or read would have given at that point."""
        self._lost(error, written=self._written)
        pending, self._in_flight = self._in_flight, None
        if pending is not None:
            self.outcomes.set(pending.slot, not_delivered(error), pending.prepared.size)

    async def send(self, pending: Pending) -> bool:
        """Write the tail and ``pending``'s envelope in one write, read the tail's reply and
        the envelope's; True when ``pending`` must be retried on a new connection."""
        transport, prepared = self.transport, pending.prepared
        try:
            check_server(transport, prepared)
            plan, rcpts = self._commands.get(prepared, transport.extensions)
        except SmtpError as exc:
            self.outcomes.set(pending.slot, exc, prepared.size)
            return False
        after_another = self.finish is not None or transport.reused
        try:
            await self._before_write()
            # Refused (SmtpProtocolError) when the server sent more than it owed.
            transaction = Transaction(transport, prepared, plan, rcpts)
            envelope = transaction.envelope(DATA)
        except SmtpError as exc:
            self._lost(exc, written=False)
            if after_another:  # nothing of ``pending`` was written: a new connection
                return True
            self.outcomes.set(pending.slot, not_delivered(exc), prepared.size)
            raise
        self._in_flight, self._written = pending, False
        try:
            await self._write(self.tail + envelope)
            self.tail, self._written = b"", True
            if self.awaiting is not None:
                await self._read_awaiting()
        except SmtpError as exc:
            self._in_flight = None
            self.outcomes.set(pending.slot, not_delivered(exc), prepared.size)
            raise
        try:
            mail_reply, rcpt_replies, data_reply = await transaction.read_envelope(data=True)
            assert data_reply is not None
        except ConnectionStaleError:
            self._in_flight = None
            return True  # RFC 5321 §4.1.1.4 aside, nothing of it was accepted: send again
        except SmtpError as exc:
            self._in_flight = None
            # A reply of its own envelope that broke the protocol (garbage, DATA answered
            # 334): what send() raises for it; a lost connection: not delivered.
            own = exc if isinstance(exc, SmtpProtocolError) else not_delivered(exc)
            self.outcomes.set(pending.slot, own, prepared.size)
            raise
        self._in_flight, self._written = None, False
        await self._after_envelope(pending, transaction, mail_reply, rcpt_replies, data_reply)
        return False

    async def _after_envelope(
        self,
        pending: Pending,
        transaction: Transaction,
        mail_reply: Reply,
        rcpt_replies: list[Reply],
        data_reply: Reply,
    ) -> None:
        transport, prepared = self.transport, pending.prepared
        refused = transaction.judge(mail_reply, rcpt_replies, data_reply)
        if refused is not None:
            self.outcomes.set(pending.slot, refused, pending.prepared.size)
            if data_reply.code == 354:
                # RFC 2920 §3.1: the server reads data now; send only the terminator.
                self.finish, self.awaiting = "end_data", _Awaiting()
            elif transport.in_transaction:  # MAIL accepted: a transaction is open
                self.finish, self.awaiting = "rset", _Awaiting(rset=True)
            return
        try:
            transport.check_nothing_buffered()  # a reply after 354 is an early reply
        except SmtpError as exc:
            transport.mark_broken()
            self.outcomes.set(pending.slot, exc, pending.prepared.size)
            raise
        if len(prepared.data) > DATA_CHUNK:  # as Transport.send_message decides
            await self._send_large(pending, transaction)
            return
        try:
            # Refused (SmtpProtocolError) when the server sent more than it owed.
            self.tail = transport.encode_data(prepared.data)
        except SmtpError as exc:
            self.outcomes.set(pending.slot, exc, pending.prepared.size)  # nothing written
            raise
        self.finish, self.awaiting = "end_data", _Awaiting(final=(pending, transaction))

    async def _send_large(self, pending: Pending, transaction: Transaction) -> None:
        # Written while the server is watched for an early reply, as send() does.
        transport = self.transport
        try:
            final = await transport.send_message(pending.prepared.data)
        except SmtpError as exc:
            outcome = after_data(exc, transport.end_of_data_written)
            self.outcomes.set(pending.slot, outcome, pending.prepared.size)
            raise
        self._set_final(pending, final, transaction)

    async def _before_write(self) -> None:
        """Before the write carrying the tail: what the server already sent (design rules
        10 and 11).  After a 354 it is an early reply (or a close) for the message whose
        data is the tail: that message is not delivered, with that reply or close."""
        transport = self.transport
        try:
            await transport.receive_ready("the message data")
            if self.finish == "end_data":
                transport.check_nothing_buffered()
                self.tail += transport.encode_end_of_data()
            elif self.finish == "rset":
                self.tail = transport.encode(Rset(), "RSET")
        except SmtpError as exc:
            transport.mark_broken()
            self._lost(exc, written=False)
            raise
        self.finish = None

    async def flush(self) -> None:
        """Write what is left (the last message's terminator) and read its reply."""
        if self.finish is not None:
            await self._before_write()
            await self._write(self.tail)
            self.tail = b""
        self._written = True
        await self._read_awaiting()

    async def _write(self, data: bytes) -> None:
        transport = self.transport
        try:
            await transport.write(data, "the message data", transport.timeouts.data_block)
        except SmtpError as exc:
            self._lost(exc, written=False)
            raise

    async def _read_awaiting(self) -> None:
        awaiting, self.awaiting = self.awaiting, None
        if awaiting is None:
            return
        self.awaiting = awaiting  # until its reply is in: a failure makes it unknown
        transport = self.transport
        if awaiting.rset:
            reply = await self._read("RSET", transport.timeouts.command, False)
            self.awaiting = None
            if reply.code != 250:
                transport.mark_broken()
                raise SmtpResponseError("the server refused RSET", reply=reply, command="RSET")
            return
        timeout = transport.timeouts.data_termination
        final = await self._read("the end of data", timeout, True)
        self.awaiting = None
        transport.transaction_done()
        if awaiting.final is not None:
            pending, transaction = awaiting.final
            self._set_final(pending, final, transaction)
        check_not_closing(final)  # the pipelined MAIL behind it will never be answered

    async def _read(self, what: str, limit: float | None, maybe_delivered: bool) -> Reply:
        try:
            return await self.transport.read_reply(what, limit, maybe_delivered=maybe_delivered)
        except SmtpError as exc:
            self._lost(exc, written=True)
            raise

    def _lost(self, error: SmtpError, *, written: bool) -> None:
        """The connection broke with the tail being written or written.

        ``written``: the write carrying the tail completed, so its message, if any, may
        have been delivered (RFC 5321 §4.1.1.4).  Otherwise the write failed: its last
        octets -- the terminator's end -- never left, the server cannot have accepted the
        message, and its outcome is the write's error (as ``send`` would raise it)."""
        self.transport.mark_broken()
        awaiting, self.awaiting = self.awaiting, None
        if awaiting is not None and awaiting.final is not None:
            pending = awaiting.final[0]
            outcome = maybe_delivered(error) if written else error
            self.outcomes.set(pending.slot, outcome, pending.prepared.size)

    def _set_final(self, pending: Pending, final: Reply, transaction: Transaction) -> None:
        try:
            outcome: Outcome = transaction.outcome(final)
        except SmtpError as exc:
            outcome = exc
        self.outcomes.set(pending.slot, outcome, pending.prepared.size)
