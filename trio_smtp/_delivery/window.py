"""A window of transactions in flight on one connection (CHUNKING + PIPELINING).

Theory of operation: with CHUNKING and PIPELINING a small in-memory message goes with its
envelope in ONE write -- MAIL, the RCPTs and ``BDAT n LAST`` with its octets -- which
RFC 2920 §3.1 allows (BDAT is not among the commands that must end a group; RFC 3030 §4.2
pipelines BDAT) and which :meth:`Transaction.group_with_last
<trio_smtp._delivery.transaction.Transaction.group_with_last>` builds.  ``BDAT n LAST`` ends
the transaction whatever its reply, so the next message's group may follow before that
reply is read.  Here groups are written back to back, up to a bound, and the replies are
read in order and matched to their messages (RFC 2920 §3.2: replies come in the order of
the commands): over a long link the throughput is bound by the window, not by one round
trip per message.

Each message stays independent.  Servers differ on where a failed transaction leaves the
session: after every recipient was refused the server is still inside the transaction
that MAIL opened (RFC 5321 §4.1.1.5: RSET is what clears it), and after a refused BDAT the
state is the server's to decide (RFC 3030 §2: a BDAT refused ends the transaction for the
client, which sends no more chunks; a BDAT out of sequence leaves the state indeterminate
and a RSET MUST clear it).  A group written while an earlier one is unanswered cannot know
how that one ended, so it starts with RSET (RFC 5321 §4.1.1.5: RSET aborts any transaction
and is harmless outside one; RFC 2920 §3.1 lets RSET appear anywhere in a group).  Only
when nothing is in flight and the last transaction ended with a 2xx to its end of data does
a group start at MAIL.  A refused MAIL, RCPT or BDAT of message k thus never touches k-1 or
k+1.  A RSET that is refused (not 421) stops the window: the messages in flight are
answered and the connection is not reused.  The connection leaves the window the same way:
when the last transaction did not end with a 2xx to its end of data, RSET goes first (as
``send`` does after a refused transaction), before the message that does not go in one
write or the next send -- else its MAIL is refused as nested.  A window stopped from
outside (a cancel, or the source raising) with replies still owed breaks the connection:
never reused half-spoken (design rule 7).

Replies in step (design rule 11).  Every SMTP reply looks alike; only their count tells a
stray line from the replies owed, and while groups are in flight a stray is counted as the
reply to the next command -- every reply after it would answer the command before its own,
and a refused end of data could be read as its RCPT's 250.  A surplus shows only once every
reply owed has arrived.  So the window is filled, then emptied: when it is full (or before
a message that does not go in one write, or at the end) every reply in flight is read, the
last one with a look at what arrived with it (:meth:`Transport.read_reply`), and only then
are the outcomes those replies decided given -- all of them unknown if a reply beyond those
owed was there.  Outcomes therefore come a window at a time; the window's groups still go
back to back, so a window of messages costs one round trip.

The bound: at most :data:`WINDOW_MESSAGES` messages, :data:`WINDOW_BYTES` octets and
:data:`WINDOW_REPLIES` replies unanswered (a message always goes alone).  It keeps memory
bounded (each message in flight is held until its outcome is known), keeps the replies we
have not read well below what socket buffers hold -- RFC 2920 §3.1 warns that a client
writing while not reading can deadlock with a server whose replies fill the window -- and
keeps a loss from touching more than a window of messages.  Sixteen 1 KiB messages cover a
100 ms round trip at 160 messages per second on one connection; a server that wants fewer
transactions in flight cannot say so, and sixteen is what aggressive MTAs pipeline.

Outcomes (the rules are :mod:`trio_smtp._delivery.outcome`'s):

* each message's replies decide it (given once they were found in step, above), as
  :func:`~trio_smtp._delivery.transaction.deliver` decides one message
  (:meth:`Transaction.judge`, :meth:`Transaction.outcome`);
* the session fails (lost, timed out, a reply malformed or out of step) -- every message
  whose group was wholly written and whose final reply was not read is "maybe delivered"
  (:func:`~trio_smtp._delivery.outcome.unanswered`: the server may process a whole group
  before it replies, RFC 2920 §3.1, RFC 5321 §4.1.1.4), unless its MAIL's reply was read
  and refused (and no reply was found out of step or malformed); a message whose group's
  write failed is not delivered (its last octets never left), and goes again on a new
  connection when this one had already carried a transaction
  (:func:`~trio_smtp._delivery.outcome.stale_if_reused`); messages not written go on a new
  connection; the messages answered since the window was last empty keep their
  outcomes after a loss or a timeout, and are unknown too after replies out of step or
  malformed (any of their replies may have answered another command);
* a 421 (RFC 5321 §3.8: the server closes the channel): the message it answers is refused
  (421 to its RSET: nothing of it was processed, it goes again; to its MAIL on a used
  connection: :func:`~trio_smtp._delivery.outcome.check_mail_not_closing`), and every
  message written after it cannot have been processed: all go again on a new connection.

Before each write, what the server already sent is fed in (:meth:`Transport.receive_ready`)
and the replies that are complete are taken as the answers to the groups in flight they
are; a close seen then stops the window before anything more is written, and more replies
than commands are refused by the core when the group is encoded (design rule 11).  Every
reply read has its own budget, that of a reply to ``BDAT n LAST``
(:func:`~trio_smtp._delivery.transaction.group_reply`); the source of messages is read
with no deadline, and when its next message is not there yet every reply in flight is read
first (:class:`~trio_smtp._delivery.batch_items.Source`): a source that takes its time, or
waits for an outcome, never leaves groups unanswered meanwhile.

Messages that do not go in one write (a body streamed or over one chunk) are not windowed:
every reply in flight is read first, then :func:`send_windowed` hands the message back to
the batch, which sends it as ``send`` does.
"""

from __future__ import annotations

from collections import deque

from .._errors import (
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpProtocolError,
    SmtpResponseError,
    SmtpTimeoutError,
)
from .._io.transport import Transport
from ..protocol import Reply, Rset
from .batch_items import Outcome, Outcomes, Pending, Source
from .outcome import (
    ConnectionStaleError,
    check_mail_not_closing,
    check_not_closing,
    stale_if_reused,
    unanswered,
)
from .transaction import Transaction, check_server, group_reply, plan_transfer

__all__ = ["WINDOW_BYTES", "WINDOW_MESSAGES", "WINDOW_REPLIES", "send_windowed"]

#: Messages in flight on one connection at most (written, final reply not read).
WINDOW_MESSAGES = 16
#: Octets written and not answered at most (a message larger than this goes alone).
WINDOW_BYTES = 1024 * 1024
#: Replies owed at most (RFC 2920 §3.1: what we do not read must fit the socket buffers).
WINDOW_REPLIES = 256


async def send_windowed(
    transport: Transport, source: Source, outcomes: Outcomes, first: Pending
) -> Pending | None:
    """Send ``first`` and more messages from ``source`` on ``transport`` through the
    window (CHUNKING and PIPELINING offered) until the source ends or the session does.

    Returns a message the window does not take (not one write), once nothing is in
    flight: the caller sends it as ``send`` does.  Messages that must go again on a new
    connection are pushed back into ``source``."""
    window = _Window(transport, source, outcomes)
    try:
        return await window.run(first)
    except _Stopped:
        return None


class _Stopped(Exception):
    """The session can take no more: every message in flight has its outcome or was
    pushed back into the source.  ``error``: why, for a message in hand none of which was
    written; ``consumed``: that message was dealt with already."""

    def __init__(self, error: SmtpError, *, consumed: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.consumed = consumed


class _Group:
    """One message in flight: its transaction and the replies read so far."""

    __slots__ = ("expected", "pending", "replies", "rset", "size", "transaction", "used")

    def __init__(
        self, pending: Pending, transaction: Transaction, *, rset: bool, size: int, used: bool
    ) -> None:
        self.pending = pending
        self.transaction = transaction
        self.rset = rset
        self.size = size
        #: The connection had carried a transaction before this one (design rule 12).
        self.used = used
        self.replies: list[Reply] = []
        #: RSET, MAIL, one per RCPT, BDAT LAST.
        self.expected = rset + 2 + len(transaction.rcpts)

    @property
    def mail_reply(self) -> Reply | None:
        """MAIL's reply, once read."""
        index = int(self.rset)
        return self.replies[index] if len(self.replies) > index else None

    def next_reply(self) -> str:
        """What the next reply answers (for messages and deadlines)."""
        index = len(self.replies) - self.rset
        if index < 0:
            return "RSET"
        if index == 0:
            return "MAIL"
        return "RCPT" if index <= len(self.transaction.rcpts) else "the end of data"


class _Window:
    def __init__(self, transport: Transport, source: Source, outcomes: Outcomes) -> None:
        self.transport = transport
        self.source = source
        self.outcomes = outcomes
        self.groups: deque[_Group] = deque()  # written, oldest first
        self.octets = 0  # written and not answered
        self.owed = 0  # replies owed to the groups in flight
        # The last transaction ended with a 2xx to its end of data and nothing is in flight:
        # the server is between transactions, MAIL may come without RSET.
        self.clean = not transport.in_transaction
        # The connection has carried a transaction (or the client reused it): found dead
        # before a message was written, that message goes again (design rule 12).
        self.used = transport.reused
        self.stopping = False  # a refused RSET: answer what is in flight, take no more
        # Outcomes decided by replies read since the window was last empty: given once every
        # reply in flight was read in step (see _release).
        self.decided: list[tuple[Pending, Outcome]] = []

    async def run(self, first: Pending) -> Pending | None:
        try:
            return await self._run(first)
        except BaseException:
            if self.groups or not self.clean:
                # Stopped from outside with replies still owed (a cancel, or the source
                # raised while it was read): the session is half-spoken.  The batch drops
                # it (design rule 7) -- kept, it would hand those replies to the next send,
                # a refusal read as an earlier message's 250.  The confirmed state alone
                # does not show it: between two groups it is READY.  With nothing in
                # flight but the last transaction refused, the server may still be inside
                # it (see _settle, which there is no time for now): dropped too.
                self.transport.mark_broken()
            raise

    async def _run(self, first: Pending) -> Pending | None:
        pending: Pending | None = first
        while pending is not None:
            try:
                if not await self._take(pending):
                    return pending  # nothing in flight: the batch sends it as send() does
            except _Stopped as stop:
                if not stop.consumed:  # none of it was written
                    self._unsent(pending, stop.error)
                raise
            # Not there yet (see Source): every reply in flight is read first, so that the
            # outcomes are known while the source takes its time.
            pending = await self.source.next(before_wait=self._drain)
        await self._drain()
        await self._settle()
        return None

    async def _take(self, pending: Pending) -> bool:
        """Send ``pending`` through the window, or refuse it before any I/O (its outcome is
        set); False when it does not go in one write (then nothing is in flight)."""
        transport, prepared = self.transport, pending.prepared
        try:
            check_server(transport, prepared)
            plan = plan_transfer(prepared, transport.extensions)
        except SmtpError as exc:
            self.outcomes.set(pending.slot, exc, prepared.size)
            return True
        rcpts = [prepared.options.rcpt(r) for r in prepared.envelope.recipients]
        transaction = Transaction(transport, prepared, plan, rcpts)
        data = transaction.bdat_data()
        if data is None or not transaction.goes_in_one_write(data):
            await self._drain()
            await self._settle()
            return False
        replies = 3 + len(rcpts)  # at most: RSET, MAIL, the RCPTs, BDAT LAST
        if self.groups and (
            len(self.groups) >= WINDOW_MESSAGES
            or self.octets + len(data) > WINDOW_BYTES
            or self.owed + replies > WINDOW_REPLIES
        ):
            await self._drain()  # the window is full: every reply, then a check (see _drain)
        await self._take_arrived()
        await self._check_stopping()
        await self._write(pending, transaction, data)
        return True

    async def _write(self, pending: Pending, transaction: Transaction, data: bytes) -> None:
        """Write ``pending``'s group: RSET first unless the server is known to be between
        transactions (see the module docstring)."""
        transport = self.transport
        rset = bool(self.groups) or not self.clean
        try:
            # SmtpProtocolError when the server sent more replies than it owed (rule 11).
            group = transaction.group_with_last(data, rset=rset)
        except SmtpError as exc:
            self._fail(exc, surplus=True)
            raise _Stopped(exc) from exc  # nothing of it was written
        try:
            await transport.write_end_of_data(group, "MAIL", transport.timeouts.mail)
        except SmtpError as exc:
            # Its write failed: its end never left, it is not delivered -- and goes again
            # when the connection had carried a transaction (found dead, design rule 12).
            self._fail(exc)
            error = stale_if_reused(exc, self.used) if isinstance(exc, SmtpConnectError) else exc
            if isinstance(error, ConnectionStaleError):
                raise _Stopped(error) from exc
            self.outcomes.set(pending.slot, error, pending.prepared.size)
            raise _Stopped(error, consumed=True) from exc
        self.groups.append(_Group(pending, transaction, rset=rset, size=len(group), used=self.used))
        self.octets += len(group)
        self.owed += rset + 2 + len(transaction.rcpts)
        self.used = True

    async def _settle(self) -> None:
        """Nothing is in flight and the connection goes on without the window (a message
        not in one write, or the next send): when the last transaction did not end with a
        2xx to its end of data, the server may still be inside it (every RCPT refused and
        BDAT refused: RFC 5321 §4.1.1.5; RFC 3030 §2 leaves the state after a refused BDAT
        indeterminate), and the next MAIL would be refused as nested.  RSET, as ``send``
        does after a refused transaction; a failed or refused RSET breaks the connection
        (the next message goes on a new one)."""
        transport = self.transport
        if self.clean or transport.broken:
            return
        try:
            reply = await transport.command(Rset(), "RSET", transport.timeouts.command)
        except SmtpError:
            transport.mark_broken()
            return
        if reply.code // 100 != 2:
            transport.mark_broken()
            return
        self.clean = True

    def _unsent(self, pending: Pending, error: SmtpError) -> None:
        """``pending`` was not written when the session stopped: it goes again on a new
        connection, unless this one carried nothing (then nothing would ever go)."""
        if self.used:
            self.source.push_back(pending)
        else:
            self.outcomes.set(pending.slot, error, pending.prepared.size)

    async def _check_stopping(self) -> None:
        """After a refused RSET: answer what is in flight, then take no more here (the
        connection is never reused: its state is unknown)."""
        if self.stopping:
            await self._drain()  # (marks the connection broken)
            raise _Stopped(SmtpResponseError("the server refused RSET", command="RSET"))

    async def _take_arrived(self) -> None:
        """Before a write: feed what the server already sent and take the complete replies
        as the answers to the groups in flight.  A close seen here stops the window (the
        replies before it still count); a reply beyond those owed is refused when the next
        group is encoded."""
        transport = self.transport
        try:
            await transport.receive_ready("MAIL", eof_ok=True)
        except SmtpError as exc:  # a reset: the replies not read are lost with it
            self._fail(exc)
            raise _Stopped(exc) from exc
        while self.groups and transport.buffered:
            await self._read_one(self.groups[0])
        if not self.groups:
            self._release()
        if transport.broken:  # the server closed: read what it said, then stop
            await self._drain()
            raise _Stopped(SmtpConnectError("the server closed the connection before MAIL"))

    async def _drain(self) -> None:
        """Read every reply in flight; then the outcomes they decided are given."""
        while self.groups:
            await self._read_one(self.groups[0])
        self._release()
        if self.stopping:
            self.transport.mark_broken()

    def _release(self) -> None:
        """Nothing is in flight and every reply was read in step -- the last one was
        followed by no reply beyond those owed (:meth:`Transport.read_reply` looks at
        what arrived with it): the outcomes decided are given (see the module docstring)."""
        decided, self.decided = self.decided, []
        for pending, outcome in decided:
            self.outcomes.set(pending.slot, outcome, pending.prepared.size)

    async def _read_one(self, group: _Group) -> None:
        """Read the next reply of ``group`` (the oldest in flight); when it is the last one
        (or a 421), ``group``'s outcome is set and it leaves the window."""
        transport = self.transport
        what = group.next_reply()
        limit = transport.timeouts.rcpt if what == "RCPT" else transport.timeouts.mail
        try:
            reply = await group_reply(transport, what, limit)
        except SmtpError as exc:
            # A "maybe delivered" that is no timeout: more replies than commands had come.
            surplus = isinstance(exc, SmtpDeliveryUnknownError) and not isinstance(
                exc, SmtpTimeoutError
            )
            self._fail(exc, surplus=surplus)
            raise _Stopped(exc) from exc
        group.replies.append(reply)
        self.owed -= 1
        if reply.code == 421:
            self._closing(group, reply, what)
        elif what == "RSET" and reply.code // 100 != 2:
            self.stopping = True  # the session's state is unknown from now on
        elif len(group.replies) == group.expected:
            self._done(group)

    def _done(self, group: _Group) -> None:
        """Every reply of ``group`` is in (or its end of data was answered 421): its
        outcome, as ``send`` decides it."""
        self._leave(group)
        self.transport.transaction_done()
        transaction, replies = group.transaction, group.replies[group.rset :]
        final = replies[-1]
        self.clean = not self.groups and final.code // 100 == 2
        outcome: Outcome | None = transaction.judge(replies[0], replies[1:-1], None)
        if outcome is None:
            try:
                outcome = transaction.outcome(final)
            except SmtpError as exc:
                outcome = exc
        self.decided.append((group.pending, outcome))

    def _closing(self, group: _Group, reply: Reply, what: str) -> None:
        """421 (RFC 5321 §3.8): the server closes.  ``group``'s message is refused with it
        -- or goes again when nothing of it was processed -- and every group written after
        it goes again on a new connection: the server cannot have processed them."""
        self.transport.mark_broken()
        self._release()  # the replies before the 421 were in step
        error = SmtpResponseError("the server is closing the connection", reply=reply)
        if what == "the end of data":
            self._done(group)  # refused (RFC 5321 §4.1.1.4: a reply to the end of data)
            self._release()
        else:
            self._leave(group)
            try:
                if what == "RSET":
                    raise ConnectionStaleError("the server closed the connection", reply=reply)
                if what == "MAIL":
                    check_mail_not_closing(reply, group.used)
                check_not_closing(reply)
            except ConnectionStaleError:
                self.source.push_back(group.pending)
            except SmtpResponseError as exc:
                self.outcomes.set(group.pending.slot, exc, group.pending.prepared.size)
        for behind in self.groups:
            self.source.push_back(behind.pending)
        self.groups.clear()
        raise _Stopped(error)

    def _fail(self, error: SmtpError, *, surplus: bool = False) -> None:
        """The session failed with ``error``: every message in flight (wholly written, final
        reply not read) gets the outcome :func:`unanswered` gives it.  So do the messages
        whose replies were read since the window was last empty when the replies may be
        out of step -- ``surplus`` (more replies than commands), a malformed reply, or one
        that makes no sense where it came: any of theirs may have answered another command,
        so not even a refused MAIL is trusted (unknown is safe, a false "not delivered"
        is not).  After a loss or a timeout, the replies read stand."""
        self.transport.mark_broken()
        suspect = surplus or isinstance(error, SmtpProtocolError)
        if suspect:
            decided, self.decided = self.decided, []
            for pending, _ in decided:
                self.outcomes.set(pending.slot, unanswered(error, None), pending.prepared.size)
        self._release()
        for group in self.groups:
            outcome = unanswered(error, None if suspect else group.mail_reply)
            self.outcomes.set(group.pending.slot, outcome, group.pending.prepared.size)
        self.groups.clear()

    def _leave(self, group: _Group) -> None:
        self.groups.popleft()
        self.octets -= group.size
        self.owed -= group.expected - len(group.replies)
