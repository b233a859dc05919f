"""The transaction engine: MAIL, RCPT..., DATA or BDAT, the message, and the outcome.

Theory of operation: a transaction is a fixed sequence of steps, the methods of one
:class:`Transaction` object that ``send`` (:func:`deliver`, also what the pool runs) and
``send_many`` (:mod:`trio_smtp._delivery.batch`, which only decides which write carries
what) both drive, after :func:`check_server` and :func:`plan_transfer` (before MAIL): the
envelope group, its replies in one pass, their verdict, the data, the outcome.  What each
result means is stated once, in :mod:`trio_smtp._delivery.outcome`.

With PIPELINING (RFC 2920) MAIL, every RCPT and DATA go in one write and every reply is read
and matched in order; without it, one command at a time.  Then:

* MAIL refused: SmtpResponseError.  Every recipient refused: SmtpFailedRecipientsError with
  ``result=None`` and no body is sent (only the terminator, if a pipelined DATA got 354,
  RFC 2920 §3.1).  DATA refused: SmtpResponseError.
* Otherwise the message goes to the accepted recipients; if some were refused, the message
  is delivered to the others and SmtpFailedRecipientsError is raised with ``.result`` saying
  who got it (the seed's behaviour).
* After a failed transaction the server is told RSET (RFC 5321 §4.1.1.5); a 421 anywhere
  closes the connection (RFC 5321 §3.8) so the next send reconnects.

"May have been delivered" (SmtpDeliveryUnknownError, never retried) starts when the write
carrying the end of the data -- the terminator, or ``BDAT n LAST`` -- has completed, and
ends when its reply is read: a lost connection, a timeout or a malformed reply (which is no
refusal: the server has the whole message) in between leaves the outcome unknown.  A write
that fails is not it (its last octets never left).
With CHUNKING and PIPELINING a small message goes with its envelope in one write, so that
point is the envelope's write: a loss after it, even before MAIL's reply and even on a
reused connection, is unknown (RFC 2920 §3.1: the server may process the whole group before
replying).  A reused connection found dead is sent again on a new one (ConnectionStaleError)
only when nothing complete can have been accepted: before any data was written (MAIL's
reply lost or 421 in the DATA path), or, for the one-write BDAT group, when the write itself
failed or MAIL got 421.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from .._errors import (
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpFailedRecipientsError,
    SmtpProtocolError,
    SmtpStatusCode,
)
from .._io.progress import progress_reporter
from .._io.transport import Transport
from .._message.options import NO_OPTIONS
from .._message.prepare import PreparedMessage, check_against_server
from .._message.sources import CHUNK_SIZE
from .._results import SendResult
from ..protocol import (
    Bdat,
    BodyKind,
    Data,
    Extensions,
    LocalProtocolError,
    Mail,
    Rcpt,
    Reply,
    Rset,
    normalize_line_endings,
)
from ..protocol._frozen import Frozen, set_field
from .chunking import send_bdat
from .outcome import (
    LOST_OR_GARBLED,
    ConnectionStaleError,
    after_data,
    check_mail_not_closing,
    check_not_closing,
    judge_envelope,
    stale_if_reused,
    transaction_outcome,
    unanswered,
)

__all__ = [
    "DATA",
    "BinaryBodyError",
    "EnvelopeCommands",
    "Transaction",
    "TransferPlan",
    "check_server",
    "deliver",
    "group_reply",
    "plan_transfer",
]


#: The one DATA command of every transaction (send's and send_many's): the connection's
#: memo of encoded commands finds it by identity.
DATA = Data()


class BinaryBodyError(SmtpError):
    """The body holds a NUL octet and the server cannot take it (BDAT with BODY=BINARYMIME,
    RFC 3030 §3, is the only way); raised before MAIL, or -- for a streamed body -- when the
    NUL is read, closing the connection without ending the data (nothing is delivered)."""


async def deliver(
    transport: Transport,
    prepared: PreparedMessage,
    *,
    looked: bool = False,
    commands: EnvelopeCommands | None = None,
) -> SendResult:
    """Run one transaction on a ready session; see the module docstring for the outcomes.

    ``looked``: the caller has just looked at the connection
    (:meth:`Transport.check_idle <trio_smtp._io.transport.Transport.check_idle>`) with no
    await since, so the look before the envelope would see the same (design rules 11, 12);
    opening a streamed body awaits, so it is looked at again then.  ``commands``: the
    connection's :class:`EnvelopeCommands` (None: built for this message alone)."""
    if prepared.body is not None:
        await prepared.body.open()  # before MAIL: a missing file is an OSError, nothing sent
        looked = False
    check_server(transport, prepared)
    if commands is None:
        commands = EnvelopeCommands()
    plan, rcpts = commands.get(prepared, transport.extensions)
    try:
        if prepared.body is None:
            # In-memory data: one deadline scope for the whole transaction (Phases).
            with transport.phases():
                result = await _transaction(transport, prepared, plan, rcpts, looked)
        else:
            result = await _transaction(transport, prepared, plan, rcpts, looked)
    except SmtpError as exc:
        await _after_failure(transport, exc)
        raise
    transport.transaction_done()
    return result


def check_server(transport: Transport, prepared: PreparedMessage) -> None:
    """Before MAIL: refuse locally what this server cannot take (RFC 1870 §4, RFC 6531
    §3.4; DSN and REQUIRETLS, RFC 3461, RFC 8689)."""
    extensions = transport.extensions
    check_against_server(prepared, extensions)
    if prepared.options is not NO_OPTIONS:
        prepared.options.check_server(extensions, tls=transport.tls)


class TransferPlan(Frozen):
    """How this message goes: the MAIL command, and DATA or BDAT (raw or normalised)."""

    __slots__ = ("bdat", "mail", "raw")
    mail: Mail
    bdat: bool
    #: BDAT with BODY=BINARYMIME: the octets go as they are (no CRLF normalisation).
    raw: bool

    def __init__(self, mail: Mail, bdat: bool, raw: bool) -> None:
        set_field(self, "mail", mail)
        set_field(self, "bdat", bdat)
        set_field(self, "raw", raw)


def plan_transfer(prepared: PreparedMessage, extensions: Extensions) -> TransferPlan:
    """Choose BODY= and the transfer (RFC 6152, RFC 3030).

    * CHUNKING offered: BDAT.  A binary body (NUL, or a line over 998 octets) goes as it is
      with BODY=BINARYMIME when that is offered too; anything else is CRLF-normalised.
    * A NUL octet without BDAT+BINARYMIME is refused locally (BinaryBodyError): neither DATA
      nor 8BITMIME may carry it.  Lines over 998 octets alone are sent anyway (with
      BODY=8BITMIME when offered), as most servers take them.
    * A streamed body's kind is unknown until read: BODY=8BITMIME is declared whenever it is
      offered (harmless for 7-bit data), and a NUL found while streaming aborts the send.
    """
    kind = prepared.body_kind
    bdat = extensions.chunking
    raw = bdat and kind is BodyKind.BINARY and "BINARYMIME" in extensions
    if prepared.has_nul and not raw:
        raise BinaryBodyError(
            "the message contains NUL octets: only BDAT with BODY=BINARYMIME carries them, "
            "and the server does not offer both (CHUNKING, BINARYMIME)",
            status_code=SmtpStatusCode.TRANSACTION_FAILED,
        )
    body: Literal["8BITMIME", "BINARYMIME"] | None = None
    if raw:
        body = "BINARYMIME"  # RFC 3030 §3
    elif kind is not BodyKind.SEVEN_BIT and extensions.eightbitmime:
        body = "8BITMIME"  # RFC 6152 §3 (kind None: streamed, unknown)
    size = prepared.size if "SIZE" in extensions else None  # RFC 1870 §6
    mail = Mail(
        prepared.envelope.sender,
        size=size,
        body=body,
        smtputf8=prepared.smtputf8_required or (prepared.smtputf8_wanted and extensions.smtputf8),
    )
    if prepared.options.wants_dsn or prepared.options.requiretls:
        mail = prepared.options.mail(mail)
    return TransferPlan(mail, bdat, raw)


class EnvelopeCommands:
    """The plan (MAIL) and the RCPTs of a connection's last message, for the next one when
    everything they depend on is the same object or value: a program sending to the same
    people message after message (the usual case) builds them once, and the connection's
    memo of encoded commands then finds them by identity.  One per connection (per batch
    in ``send_many``)."""

    __slots__ = ("_commands", "_key")

    def __init__(self) -> None:
        self._key: tuple[object, ...] = ()
        self._commands: tuple[TransferPlan, list[Rcpt]] | None = None

    def get(
        self, prepared: PreparedMessage, extensions: Extensions
    ) -> tuple[TransferPlan, list[Rcpt]]:
        """``prepared``'s plan (:func:`plan_transfer`, which may raise) and RCPTs."""
        key = (
            prepared.envelope,
            prepared.options,
            prepared.body_kind,
            prepared.has_nul,
            prepared.smtputf8_required,
            prepared.smtputf8_wanted,
            prepared.size if "SIZE" in extensions.keywords else None,
            extensions,
        )
        if key == self._key and self._commands is not None:
            return self._commands
        plan = plan_transfer(prepared, extensions)
        options = prepared.options
        commands = plan, [options.rcpt(r) for r in prepared.envelope.recipients]
        self._key, self._commands = key, commands
        return commands


class Transaction:
    """One message's transaction on one transport, step by step -- the engine ``send``, the
    pool (both through :func:`deliver`) and ``send_many`` drive: the envelope group
    (:meth:`envelope`), its replies in one pass (:meth:`read_envelope`), their verdict
    (:meth:`judge`), the data (:meth:`send_data`), the outcome (:meth:`outcome`).  Which
    write carries which step is the driver's business (a batch puts the previous message's
    data ahead of the next envelope); what each result means is
    :mod:`trio_smtp._delivery.outcome`'s."""

    __slots__ = ("accepted", "plan", "prepared", "rcpts", "rejected", "transport")

    def __init__(
        self,
        transport: Transport,
        prepared: PreparedMessage,
        plan: TransferPlan,
        rcpts: list[Rcpt],
    ) -> None:
        self.transport = transport
        self.prepared = prepared
        self.plan = plan
        self.rcpts = rcpts
        self.accepted: list[str] = []
        self.rejected: dict[str, Reply] = {}

    def envelope(self, last: Data | None) -> bytes:
        """MAIL, the RCPTs and ``last`` (DATA, or nothing before BDAT) as one pipelined
        group (RFC 2920 §3.1); SmtpProtocolError when the server already sent more than it
        owed."""
        encode = self.transport.encode
        group = encode(self.plan.mail, "MAIL")
        for rcpt in self.rcpts:
            group += encode(rcpt, "RCPT")
        if last is not None:
            group += encode(last, "DATA")
        return group

    async def read_envelope(
        self, *, data: bool, group: bytes | None = None
    ) -> tuple[Reply, list[Reply], Reply | None]:
        """The replies to a pipelined envelope (RFC 2920): MAIL, the RCPTs and, when
        ``data``, DATA -- in one pass (:meth:`Transport.read_replies`).  ``group``: its bytes,
        written here under MAIL's budget; None when the caller already wrote it (a batch puts
        the previous message's tail first).  Never for a group carrying BDAT LAST (see
        :func:`_envelope_with_last`).

        MAIL's write or reply lost, or MAIL answered 421, on a reused connection: stale (the
        message goes again on a new one); any other 421 is SmtpResponseError."""
        transport, rcpts = self.transport, len(self.rcpts)
        timeouts = transport.timeouts
        phases = [("MAIL", timeouts.mail), *[("RCPT", timeouts.rcpt)] * rcpts]
        if data:
            phases.append(("DATA", timeouts.data_initiation))
        replies: list[Reply] = []
        try:
            if group is None:
                await transport.read_replies(phases, replies)
            else:
                await transport.exchange_group(group, phases, replies)
        except SmtpConnectError as exc:
            if replies:
                raise
            raise stale_if_reused(exc, transport.reused)  # noqa: B904 -- it sets the cause
        mail_reply = check_mail_not_closing(replies[0], transport.reused)
        rcpt_replies = [check_not_closing(reply) for reply in replies[1 : rcpts + 1]]
        return mail_reply, rcpt_replies, check_not_closing(replies[-1]) if data else None

    def bdat_data(self) -> bytes | None:
        """With BDAT: the octets sent for an in-memory message -- as they are with
        BODY=BINARYMIME, else with every line end made CRLF (RFC 3030 §3); None for a
        streamed body."""
        prepared = self.prepared
        if self.plan.raw:
            return prepared.data
        return normalize_line_endings(prepared.data) if prepared.body is None else None

    def goes_in_one_write(self, data: bytes | None) -> bool:
        """Whether this BDAT message goes with its envelope in ONE write (MAIL, RCPTs and
        ``BDAT n LAST`` with ``data``, :meth:`bdat_data`): with PIPELINING, in memory and at
        most one chunk (RFC 2920 §3.1, RFC 3030 §4.2)."""
        return (
            self.plan.bdat
            and self.transport.extensions.pipelining
            and data is not None
            and len(data) <= CHUNK_SIZE
        )

    def group_with_last(self, data: bytes, *, rset: bool = False) -> bytes:
        """The one-write group (:meth:`goes_in_one_write`): RSET first when ``rset``, then
        MAIL, the RCPTs and ``BDAT n LAST`` with ``data``.  SmtpProtocolError when the
        server already sent more replies than it owed (design rule 11)."""
        encode = self.transport.encode
        parts = [encode(Rset(), "RSET")] if rset else []
        parts.append(encode(self.plan.mail, "MAIL"))
        parts.extend(encode(rcpt, "RCPT") for rcpt in self.rcpts)
        parts.append(encode(Bdat(data, last=True), "BDAT"))
        return b"".join(parts)

    def judge(
        self, mail_reply: Reply, rcpt_replies: list[Reply], data_reply: Reply | None
    ) -> SmtpError | None:
        """Record who was accepted; the error the message ends with when its data must not
        go (:func:`~trio_smtp._delivery.outcome.judge_envelope`), else None."""
        recipients = self.prepared.envelope.recipients
        self.accepted, self.rejected, refused = judge_envelope(
            recipients, mail_reply, rcpt_replies, data_reply
        )
        return refused

    async def send_data(self) -> Reply:
        """After 354: the data, the terminator and its reply; a failure once the end of data
        was written is "maybe delivered" (:func:`~trio_smtp._delivery.outcome.after_data`)."""
        transport, body = self.transport, self.prepared.body
        reporter = progress_reporter(self.prepared.progress, self.prepared.size)
        try:
            if body is None:
                return await transport.send_message(self.prepared.data, reporter)
            return await transport.send_stream(_no_nul(body.chunks()), reporter)
        except SmtpError as exc:
            raise after_data(exc, transport.end_of_data_written)  # noqa: B904 -- sets the cause

    def outcome(self, final: Reply) -> SendResult:
        """What the reply to the end of data decides (see
        :func:`~trio_smtp._delivery.outcome.transaction_outcome`)."""
        return transaction_outcome(self.prepared, final, self.accepted, self.rejected)


async def _transaction(
    transport: Transport,
    prepared: PreparedMessage,
    plan: TransferPlan,
    rcpts: list[Rcpt],
    looked: bool,
) -> SendResult:
    if not looked:
        await _before_envelope(transport)
    transaction = Transaction(transport, prepared, plan, rcpts)
    if plan.bdat:
        return await _transaction_bdat(transaction)
    data_reply: Reply | None
    if transport.extensions.pipelining:
        mail_reply, rcpt_replies, data_reply = await transaction.read_envelope(
            data=True, group=transaction.envelope(DATA)
        )
    else:
        mail_reply, rcpt_replies, data_reply = await _envelope_one_by_one(
            transport, plan.mail, rcpts, last=DATA
        )
    refused = transaction.judge(mail_reply, rcpt_replies, data_reply)
    if refused is not None:
        if data_reply is not None and data_reply.code == 354:
            # RFC 2920 §3.1: DATA went in the same write; never send a body nobody should get.
            await _terminator_alone(transport)
        raise refused
    return transaction.outcome(await transaction.send_data())


async def _terminator_alone(transport: Transport) -> None:
    """After a 354 nobody should get: only the terminator, and its reply (ignored).  If
    the server already spoke or closed, nothing more goes: the connection is closed."""
    try:
        await transport.receive_ready("the end of data")
        transport.check_nothing_buffered()
    except SmtpError:
        transport.mark_broken()  # what the envelope's replies said is the outcome
        return
    await transport.write(transport.encode_end_of_data(), "the end of data", None)
    await transport.read_reply("the end of data", transport.timeouts.data_termination)


async def _transaction_bdat(transaction: Transaction) -> SendResult:
    """RFC 3030.  A small in-memory message goes with the envelope in ONE write (MAIL, RCPTs
    and ``BDAT n LAST`` with its octets, pipelined as RFC 3030 §4.2 allows); otherwise the
    envelope's replies are read first, then the body is sent in chunks."""
    transport, prepared, plan = transaction.transport, transaction.prepared, transaction.plan
    rcpts = transaction.rcpts
    data = transaction.bdat_data()
    # In memory, the octets counted are those sent (line ends normalised): sent ends at total.
    total = prepared.size if data is None else len(data)
    reporter = progress_reporter(prepared.progress, total)
    if transaction.goes_in_one_write(data):
        assert data is not None
        if reporter is not None:
            reporter.finish(len(data))  # before anything is written
        mail_reply, rcpt_replies, final = await _envelope_with_last(transaction, data)
        refused = transaction.judge(mail_reply, rcpt_replies, None)
        if refused is not None:
            raise refused
        return transaction.outcome(final)
    if transport.extensions.pipelining:
        mail_reply, rcpt_replies, _ = await transaction.read_envelope(
            data=False, group=transaction.envelope(None)
        )
    else:
        mail_reply, rcpt_replies, _ = await _envelope_one_by_one(
            transport, plan.mail, rcpts, last=None
        )
    refused = transaction.judge(mail_reply, rcpt_replies, None)
    if refused is not None:
        raise refused
    if data is not None:
        chunks = _slices(data)
    else:
        assert prepared.body is not None
        chunks = _no_nul(prepared.body.chunks())
    final = await send_bdat(transport, chunks, normalise=data is None, reporter=reporter)
    return transaction.outcome(final)


async def _slices(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_SIZE):
        yield bytes(view[start : start + CHUNK_SIZE])


async def _no_nul(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A streamed body, refused (BinaryBodyError) at its first NUL octet."""
    async for chunk in chunks:
        if b"\0" in chunk:
            raise BinaryBodyError(
                "the streamed message contains a NUL octet; it was not delivered "
                "(only BDAT with BODY=BINARYMIME carries NUL, and streamed bodies are sent "
                "as text)",
                status_code=SmtpStatusCode.TRANSACTION_FAILED,
            )
        yield chunk


async def read_mail_reply(transport: Transport, mail: Mail) -> Reply:
    """MAIL alone (no PIPELINING); a reused connection that is already dead becomes
    ConnectionStale."""
    try:
        reply = await transport.command(mail, "MAIL", transport.timeouts.mail)
    except SmtpConnectError as exc:
        raise stale_if_reused(exc, transport.reused)  # noqa: B904 -- it sets the cause
    return check_mail_not_closing(reply, transport.reused)


async def _envelope_with_last(
    transaction: Transaction, data: bytes
) -> tuple[Reply, list[Reply], Reply]:
    """MAIL, every RCPT and ``BDAT n LAST`` with the octets in ONE write, then every reply.

    The rule (RFC 2920 §3.1, RFC 3030 §2, RFC 5321 §4.1.1.4): a server may process the whole
    group -- and deliver -- before it sends any reply, so once this write has completed, a
    connection lost (or a reply malformed) before the final reply is
    SmtpDeliveryUnknownError, even before MAIL's reply and even on a reused connection:
    never sent again.  A reused connection is taken
    as stale (sent again on a new one) only when nothing complete can have been accepted:
    the write itself failed (its last octets, the end of the data, never left), or MAIL got
    421 (RFC 5321 §3.8: refused, the server closes; BDAT is then refused too)."""
    transport, rcpts = transaction.transport, transaction.rcpts
    group = transaction.group_with_last(data)
    try:
        await transport.write_end_of_data(group, "MAIL", transport.timeouts.mail)
    except SmtpConnectError as exc:
        raise stale_if_reused(exc, transport.reused)  # noqa: B904 -- it sets the cause
    try:
        mail_reply = await group_reply(transport, "MAIL", transport.timeouts.mail)
    except LOST_OR_GARBLED as exc:
        raise unanswered(exc, None) from exc
    check_mail_not_closing(mail_reply, transport.reused)
    try:
        rcpt_replies = [
            check_not_closing(await group_reply(transport, "RCPT", transport.timeouts.rcpt))
            for _ in rcpts
        ]
        final = await transport.end_of_data_reply("the end of data")
    except (*LOST_OR_GARBLED, SmtpDeliveryUnknownError) as exc:
        if mail_reply.code // 100 == 2 and isinstance(exc, SmtpDeliveryUnknownError):
            raise  # already the outcome (a timeout of the final reply, replies out of step)
        raise unanswered(exc, mail_reply) from exc
    return mail_reply, rcpt_replies, final


async def _before_envelope(transport: Transport) -> None:
    """Before the first write of a transaction: anything the server sent since its last
    reply (nothing is owed) is unsolicited, and a close ends the connection; either way
    nothing was written, so on a reused connection it is stale (design rules 11, 12).
    (SmtpClient looks before handing the connection out; this closes the gap after it.)"""
    try:
        await transport.receive_ready("MAIL")
        if transport.buffered:
            transport.mark_broken()
            raise SmtpProtocolError("the server sent a reply nobody asked for before MAIL")
    except (SmtpConnectError, SmtpProtocolError) as exc:
        if transport.reused:
            raise ConnectionStaleError(f"the reused connection is unusable: {exc}") from exc
        raise


async def group_reply(transport: Transport, what: str, limit: float | None) -> Reply:
    """A reply to MAIL or RCPT written in one group with ``BDAT n LAST``.

    RFC 2920 §3.1 lets the server hold every reply of a group until its last command (BDAT
    LAST ends it) is processed: the message may be delivered before MAIL's reply comes, so
    the wait gets the end-of-data budget when that is longer, and a timeout is
    SmtpDeliveryTimeoutError (RFC 5321 §4.1.1.4)."""
    termination = transport.timeouts.data_termination
    if limit is not None and (termination is None or termination > limit):
        limit = termination
    return await transport.read_reply(what, limit, maybe_delivered=True)


async def _envelope_one_by_one(
    transport: Transport, mail: Mail, rcpts: list[Rcpt], *, last: Data | None
) -> tuple[Reply, list[Reply], Reply | None]:
    mail_reply = await read_mail_reply(transport, mail)
    if mail_reply.code // 100 != 2:
        return mail_reply, [], None
    rcpt_replies = []
    for rcpt in rcpts:
        reply = await transport.command(rcpt, "RCPT", transport.timeouts.rcpt)
        rcpt_replies.append(check_not_closing(reply))
    if last is None or not any(reply.code // 100 == 2 for reply in rcpt_replies):
        return mail_reply, rcpt_replies, None
    data_reply = await transport.command(last, "DATA", transport.timeouts.data_initiation)
    return mail_reply, rcpt_replies, check_not_closing(data_reply)


async def _after_failure(transport: Transport, error: SmtpError) -> None:
    """RSET after a refused transaction; close after 421 or a broken session."""
    if transport.broken:
        return
    if isinstance(error, SmtpFailedRecipientsError) and error.result is not None:
        return  # delivered to the others: the transaction completed
    if error.reply is not None and error.reply.code == 421:
        transport.mark_broken()
        return
    if isinstance(error, BinaryBodyError) and transport.owed:
        transport.mark_broken()
        return
    try:
        reply = await transport.command(Rset(), "RSET", transport.timeouts.command)
    except (SmtpError, LocalProtocolError):
        transport.mark_broken()  # the original error matters more than RSET's
        return
    if reply.code != 250:
        transport.mark_broken()
