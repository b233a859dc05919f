"""The Trio driver: streams, TLS, reads and writes, per-phase deadlines, error mapping.

Theory of operation: a :class:`Transport` pairs one ``trio.abc.Stream`` with one sans-IO
:class:`~trio_smtp.protocol.ClientConnection`.  Writing is ``conn.send(command)`` then one
``send_all`` per pipelined group; reading is httpcore's loop: ``next_event()``, and on
NEED_DATA read a large chunk and feed it.  Every await runs under a phase deadline that covers
the whole reply (RFC 5321 §4.5.3.2), not each read.

Two rules make a half-spoken session impossible to reuse: any exception or cancellation inside
an I/O step marks the transport broken (and tells the machine through ``send_failed()``), and
the client closes a transport that is not :attr:`Transport.reusable`.  Errors from Trio, the
``ssl`` module and the protocol core become the library's exceptions in :func:`map_errors`
only; it and the deadlines live in :mod:`trio_smtp._io.deadlines`.

Connecting is :func:`~trio_smtp._io.connect.open_transport`; TLS and the looks at a bare
stream are in :mod:`trio_smtp._io.stream`; message data written while the server is watched
is a :class:`~trio_smtp._io.data.DataWriter` the transport owns for one :meth:`send_stream`.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import trio

from .._config import Timeouts
from .._errors import (
    SmtpConnectError,
    SmtpDeliveryTimeoutError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpProtocolError,
    SmtpResponseError,
    SmtpTimeoutError,
)
from ..protocol import (
    NEED_DATA,
    ClientConnection,
    Command,
    ConnectionClosed,
    Extensions,
    ProtocolError,
    Quit,
    RemoteProtocolError,
    Reply,
    State,
)
from .data import DATA_CHUNK, DataWriter, SourceFailed, slices
from .deadlines import (
    Phases,
    Watchdog,
    deadline,
    map_errors,
    mapped_error,
    timeout_error,
)
from .log import ProtocolLog
from .progress import ProgressReporter
from .stream import (
    RECEIVE_SIZE,
    TLS_RECORD_WAIT,
    TlsFacts,
    local_address,
    note_tls,
    or_inf,
    peer_is_loopback,
    readable,
    tls_facts,
    wrap_tls,
)

__all__ = ["StreamFactory", "Transport", "deadline", "map_errors"]

#: A user-supplied way to open the connection (instead of TCP to host:port).
StreamFactory = Callable[[], Awaitable[trio.abc.Stream]]


class Transport:
    """One SMTP connection: a stream and its sans-IO machine."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: ClientConnection,
        *,
        host: str,
        timeouts: Timeouts,
        log: ProtocolLog | None = None,
    ) -> None:
        self.stream = stream
        self.conn = conn
        self.host = host
        self.timeouts = timeouts
        #: The protocol log of this connection (logger ``trio_smtp.protocol``, DEBUG): every
        #: command encoded and every reply goes through it; it hides AUTH secrets and
        #: message data by the command's type.
        self.log = log if log is not None else ProtocolLog(host)
        #: True once the stream is TLS (implicit, or after STARTTLS).
        self.tls = isinstance(stream, trio.SSLStream)
        #: True when credentials may be sent in clear (see :func:`peer_is_loopback`).
        self.loopback = peer_is_loopback(stream)
        #: Transactions completed on this connection (see :attr:`reused` for staleness).
        self.transactions = 0
        #: True once the connection is handed out for a transaction after an earlier one,
        #: whatever that one's outcome: a connection found dead before anything could be
        #: accepted is then stale, and the message goes again on a new one (design rule 12).
        self.reused = False
        #: True from the moment the write carrying the end of data (the terminator, or
        #: ``BDAT n LAST``) of the current transaction completed, until
        #: :meth:`begin_transaction`: from then on the server may have the whole message
        #: (RFC 5321 §4.1.1.4), so a loss is "maybe delivered" and no cancel can take the
        #: message back (design rule 10: the client's event decision reads this).  A write
        #: that failed never sets it: its last octets never reached the kernel, so the
        #: server cannot have seen a complete end of data.
        self.end_of_data_written = False
        self._broken = False
        self._phases: Phases | None = None
        #: The client's :class:`Watchdog`, which enforces :class:`Phases` deadlines without
        #: moving them; None (a transport used on its own): Phases move their deadlines.
        self.watchdog: Watchdog | None = None

    def mark_reused(self) -> None:
        """The connection is handed out again after an earlier transaction (see
        :attr:`reused`)."""
        self.reused = True

    def transaction_done(self) -> None:
        """A transaction ended with its outcome known (see :attr:`transactions`)."""
        self.transactions += 1

    def begin_transaction(self) -> None:
        """A new transaction starts on this connection: its end of data is not written yet."""
        self.end_of_data_written = False

    def phases(self) -> Phases:
        """One deadline scope for a transaction of in-memory data (see :class:`Phases`)."""
        return Phases(self.watchdog, self._set_phases)

    def _set_phases(self, phases: Phases | None) -> None:
        self._phases = phases

    def _limit(
        self, seconds: float | None, what: str, error: type[SmtpTimeoutError] = SmtpTimeoutError
    ) -> Phases:
        """The deadline of one phase: the transaction's :class:`Phases`, armed again, when
        one is open; otherwise a scope of its own (:func:`deadline`)."""
        phases = self._phases
        if phases is None:
            return deadline(seconds, what, error)
        phases.arm(seconds, what, error)
        return phases

    @property
    def extensions(self) -> Extensions:
        """What the server's last EHLO reply offered (empty before it, and after STARTTLS)."""
        return self.conn.extensions

    @property
    def buffered(self) -> int:
        """Octets received from the server and not read as a reply yet (0: none)."""
        return self.conn.buffered

    @property
    def owed(self) -> bool:
        """True while a command written has no reply yet."""
        return bool(self.conn.pending)

    @property
    def in_transaction(self) -> bool:
        """True between an accepted MAIL and the end of its transaction (RSET clears it)."""
        return self.conn.state is not State.READY

    @staticmethod
    def fits_one_write(data: bytes) -> bool:
        """Whether message data goes with its terminator in one write (:meth:`send_message`)
        rather than in chunks while the server is watched (:meth:`send_stream`)."""
        return len(data) <= DATA_CHUNK

    def encode_data(self, data: bytes) -> bytes:
        """Message data after 354, dot-stuffed (RFC 5321 §4.5.2); the log counts it.  Like
        :meth:`encode`, SmtpProtocolError when the server already sent more than it owes."""
        try:
            stuffed = self.conn.send_data(data)
        except RemoteProtocolError as exc:
            raise self._unsolicited(exc, "the message data") from exc
        self.log.log_data(len(stuffed))
        return stuffed

    def encode_end_of_data(self) -> bytes:
        """The terminator ``CRLF.CRLF`` (RFC 5321 §4.1.1.4) that ends the message data."""
        try:
            data = self.conn.end_data()
        except RemoteProtocolError as exc:
            raise self._unsolicited(exc, "the end of data") from exc
        self.log.log_end_of_data()
        return data

    def _unsolicited(self, exc: RemoteProtocolError, what: str) -> SmtpProtocolError:
        # The core refuses to encode after a reply nobody asked for (design rule 11).
        self.mark_broken()
        return SmtpProtocolError(f"the server broke the protocol before {what}: {exc}")

    @property
    def broken(self) -> bool:
        """True once a write or read failed or was cancelled: close, never reuse."""
        return self._broken

    @property
    def reusable(self) -> bool:
        """Not broken, and between transactions: safe for the next message."""
        return not self._broken and self.conn.state is State.READY

    async def receive_ready(self, what: str, *, eof_ok: bool = False) -> None:
        """Feed the machine what the server has already sent, without waiting for more.

        Called before every write (design rules 10 and 11): a reply that came before its
        command, or a close, must be seen before we write, not read as the answer to what
        we write next.  The socket is looked at without blocking; only when it is readable
        is one ``receive_some`` made (it returns at once: data, EOF or an error are there).
        A close is SmtpConnectError (nothing written after it can arrive), unless
        ``eof_ok`` (then it is only fed to the machine); a reset is SmtpConnectError.
        Streams that are not sockets cannot be looked into (nothing is fed)."""
        if not readable(self.stream):
            return
        try:
            # Over TLS a readable socket may carry only a handshake record (a session
            # ticket): never wait long for application data that is not coming.
            with trio.move_on_after(TLS_RECORD_WAIT if self.tls else math.inf):
                data = bytes(await self.stream.receive_some(RECEIVE_SIZE))
                self.conn.receive_data(data)
                if not data:
                    if eof_ok:
                        # Never reused, but the replies already received stay readable.
                        self._broken = True
                        return
                    self.mark_broken()
                    raise SmtpConnectError(f"the server closed the connection before {what}")
        except SmtpConnectError:
            raise
        except BaseException as exc:
            raise self._failed(exc, what)  # noqa: B904 -- _failed sets the cause

    async def check_idle(self) -> bool:
        """Before a kept connection takes a new transaction: True when it is still fit;
        False (and the connection broken) when the server closed it, said 421, or sent
        anything at all since its last reply (design rules 11 and 12)."""
        if not self.reusable:
            return False
        try:
            await self.receive_ready("the next transaction")
            event = self.conn.next_event()
        except (SmtpError, ProtocolError):
            self.mark_broken()
            return False
        if event is NEED_DATA and not self.conn.buffered:
            return True
        if isinstance(event, Reply):
            self.log.log_received(event)  # an unsolicited 421: worth seeing in the log
        self.mark_broken()  # that 421, a partial line, or EOF
        return False

    def encode(self, command: Command, what: str) -> bytes:
        """``conn.send(command)``: its bytes, or, when the server already sent more than
        the replies owed to the commands before it, SmtpProtocolError (the connection is
        broken).  A LocalProtocolError (our misuse) passes through."""
        try:
            data = self.conn.send(command)
        except RemoteProtocolError as exc:
            raise self._unsolicited(exc, what) from exc
        self.log.log_command(command, data)
        return data

    def mark_broken(self) -> None:
        """Never use this connection again (a write or read failed or was cancelled)."""
        if not self._broken:
            self._broken = True
            try:
                self.conn.send_failed()
            except ProtocolError:
                pass

    def _failed(self, exc: BaseException, what: str, *, tls: bool = False) -> BaseException:
        """A read or write failed or was cancelled: never reuse the connection; return what
        to raise (``exc`` as :class:`map_errors` maps it, caught instead of entering a
        context manager for every step)."""
        self.mark_broken()
        error = mapped_error(exc, what, tls=tls)
        if error is None:
            return exc
        error.__cause__ = exc
        return error

    async def write(self, data: bytes, what: str, limit: float | None) -> None:
        """Write ``data`` in one ``send_all`` under ``limit`` seconds."""
        try:
            with self._limit(limit, what):
                await self.stream.send_all(data)
        except BaseException as exc:
            raise self._failed(exc, what)  # noqa: B904 -- _failed sets the cause

    def _buffered_reply(self, what: str) -> Reply | None:
        """The next reply if it was already received (pipelined replies usually arrive
        together), else None; no await, so no deadline is needed."""
        try:
            event = self.conn.next_event()
        except RemoteProtocolError as exc:
            self.mark_broken()
            raise SmtpProtocolError(f"the server broke the protocol during {what}: {exc}") from exc
        if type(event) is Reply:
            self.log.log_received(event)
            return event
        if isinstance(event, ConnectionClosed):
            self.mark_broken()
            raise SmtpConnectError(f"the server closed the connection during {what}")
        return None

    async def read_reply(
        self, what: str, limit: float | None, *, maybe_delivered: bool = False
    ) -> Reply:
        """The next reply, under one deadline for the whole reply.

        ``maybe_delivered``: the reply to the end of data (or BDAT LAST); a timeout is then
        :class:`SmtpDeliveryTimeoutError`."""
        # A reply already received needs no deadline and no error mapping.
        reply = self._buffered_reply(what)
        if reply is None:
            timeout = SmtpDeliveryTimeoutError if maybe_delivered else SmtpTimeoutError
            reply = await self._receive_reply(what, limit, timeout)
        if maybe_delivered:
            await self._check_in_step(what)
        return reply

    async def _receive_reply(
        self, what: str, limit: float | None, error: type[SmtpTimeoutError]
    ) -> Reply:
        # Nothing complete is buffered (the caller just asked): read before parsing again,
        # under one deadline for the whole reply.
        try:
            with self._limit(limit, what, error):
                return await self._next_reply(what, receive_first=True)
        except BaseException as exc:
            raise self._failed(exc, what)  # noqa: B904 -- _failed sets the cause

    async def _check_in_step(self, what: str) -> None:
        """After the reply that decides a message's outcome (design rules 10 and 11): if
        what has already arrived holds more than the replies owed, the replies are out of
        step with the commands -- a stray line came first, and the reply just read may
        answer another command (a ``554`` taken for a ``250``, or the reverse).  Then the
        outcome cannot be known: SmtpDeliveryUnknownError, the connection broken.

        Only what is already here is looked at (no wait): a stray whose reply is still on
        the way is found before the next write instead (:meth:`receive_ready`), after this
        message's outcome was given.  A close or reset now says nothing about this reply
        and only keeps the connection from being reused."""
        owed = bool(self.conn.pending)  # (a failed read clears the machine's queue)
        try:
            await self.receive_ready(what, eof_ok=True)
        except SmtpError:
            if owed:
                raise  # the replies still owed are lost with the connection
            return
        try:
            self.conn.check_unsolicited(f"the reply to {what} was taken")
        except RemoteProtocolError as exc:
            self.mark_broken()
            unknown = SmtpDeliveryUnknownError(
                f"the server sent more replies than commands around {what} ({exc}): "
                "its replies are out of step, so the message may have been delivered"
            )
            raise unknown from exc

    async def _next_reply(self, what: str, *, receive_first: bool = False) -> Reply:
        # httpcore's _receive_event: next_event(); on NEED_DATA read and feed.
        if receive_first:
            self.conn.receive_data(bytes(await self.stream.receive_some(RECEIVE_SIZE)))
        while True:
            event = self.conn.next_event()
            if isinstance(event, Reply):
                self.log.log_received(event)
                return event
            if isinstance(event, ConnectionClosed):
                raise SmtpConnectError(f"the server closed the connection during {what}")
            data = bytes(await self.stream.receive_some(RECEIVE_SIZE))
            self.conn.receive_data(data)

    async def command(
        self, command: Command, what: str, limit: float | None, *, tls: bool = False
    ) -> Reply:
        """Send one command and read its reply, both under one deadline (a group of one,
        after a look at what the server already sent: see :meth:`receive_ready`)."""
        await self.receive_ready(what)
        data = self.encode(command, what)  # LocalProtocolError here: nothing was written
        replies: list[Reply] = []
        await self.exchange_group(data, ((what, limit),), replies, tls=tls)
        return replies[0]

    async def exchange_group(
        self,
        data: bytes,
        phases: Sequence[tuple[str, float | None]],
        replies: list[Reply],
        *,
        tls: bool = False,
    ) -> None:
        """Write ``data`` (a pipelined group, already through :meth:`encode`) and read one
        reply per entry of ``phases`` (what it answers, its budget) into ``replies``.

        The write and the first reply share the first budget (as :meth:`command`); each
        later reply has its own, armed only when it is not already here: the replies of a
        group usually arrive together, and are then parsed in one pass after one receive.
        Reading stops after a 421 (RFC 5321 §3.8: the server closes; nothing more comes).
        On an error, ``replies`` holds the replies read before it: none means the write or
        the first reply failed.  ``tls``: during STARTTLS (see :func:`map_errors`)."""
        what, limit = phases[0]
        try:
            with self._limit(limit, what):
                await self.stream.send_all(data)
                replies.append(await self._next_reply(what))
        except BaseException as exc:
            raise self._failed(exc, what, tls=tls)  # noqa: B904 -- _failed sets the cause
        if len(phases) > 1:
            await self.read_replies(phases[1:], replies)

    async def read_replies(
        self, phases: Sequence[tuple[str, float | None]], replies: list[Reply]
    ) -> None:
        """Read one reply per entry of ``phases`` into ``replies`` (see
        :meth:`exchange_group`); a reply already received costs no await and no deadline."""
        for what, limit in phases:
            if replies and replies[-1].code == 421:
                return
            reply = self._buffered_reply(what)
            if reply is None:
                reply = await self._receive_reply(what, limit, SmtpTimeoutError)
            replies.append(reply)

    async def send_message(self, data: bytes, reporter: ProgressReporter | None = None) -> Reply:
        """After 354: the message data, the terminator, and the reply to the terminator.

        A message that fits in one write goes with its terminator in one ``send_all``; the
        server cannot tell it apart from a reply to the terminator, so its next reply is
        read as the final one.  A larger message is written while the server is watched
        (see :meth:`send_stream`).  :attr:`end_of_data_written` is set only once the write
        carrying the terminator completed: ``send_all`` raising means its last octets never
        left (the caller decides what a failure means, see :mod:`trio_smtp._delivery.outcome`).
        ``reporter``: see :mod:`trio_smtp._io.progress`.
        """
        # This message's end of data is not written yet, whatever an earlier one on this
        # connection did (send_many sends many messages between two begin_transaction()s).
        self.end_of_data_written = False
        if not self.fits_one_write(data):
            return await self.send_stream(slices(data), reporter)
        try:
            await self.receive_ready("the message data")
            self.check_nothing_buffered()
            if reporter is not None:
                reporter.finish(len(data))
            payload = self.encode_data(data) + self.encode_end_of_data()
            await self.send_data_block(payload)
        except BaseException:
            self.mark_broken()
            raise
        self.end_of_data_written = True
        what = "the end of data"
        return await self.read_reply(what, self.timeouts.data_termination, maybe_delivered=True)

    async def send_stream(
        self, chunks: AsyncIterator[bytes], reporter: ProgressReporter | None = None
    ) -> Reply:
        """After 354: the chunks, dot-stuffed, the terminator, and its reply.

        The server is watched while we write: a reply that arrives before the terminator is
        an early reply (a refusal, or 421 before closing); writing stops, the terminator is
        never sent, and it is raised with its code.  An exception from ``chunks`` (a file
        that fails to read) stops the data without the terminator and is raised as it is.
        A cancellation comes out as a bare ``Cancelled``, never inside an exception group
        (see :meth:`DataWriter.write_watched <trio_smtp._io.data.DataWriter.write_watched>`).
        A ``reporter`` that raises stops the data the same way (see
        :mod:`trio_smtp._io.progress`).
        """
        self.end_of_data_written = False  # (as in send_message)
        writer = DataWriter(self, reporter)
        # A streamed source's reads are not phases: every step below has its own deadline.
        phases, self._phases = self._phases, None
        try:
            if phases is not None:
                phases.arm(None, "the message data", SmtpTimeoutError)
            self.check_nothing_buffered()
            error = await writer.write_watched(chunks)
            return await self._finish_data(writer, error)
        except BaseException:
            self.mark_broken()
            raise
        finally:
            self._phases = phases

    async def write_end_of_data(self, data: bytes, what: str, limit: float | None) -> None:
        """:meth:`write` the octets that end the data (``BDAT n LAST``, alone or in a
        pipelined group); once written, the outcome is unknown until the reply is read."""
        await self.write(data, what, limit)
        self.end_of_data_written = True

    async def end_of_data_reply(self, what: str, limit: float | None = None) -> Reply:
        """The reply to the end of data, once it was completely written
        (:attr:`end_of_data_written`), within ``limit`` (by default
        :attr:`Timeouts.data_termination <trio_smtp.Timeouts.data_termination>`); a timeout
        is SmtpDeliveryTimeoutError.  What a lost connection or a malformed reply now means
        ("maybe delivered") is decided by the caller, in :mod:`trio_smtp._delivery.outcome`."""
        if limit is None:
            limit = self.timeouts.data_termination
        return await self.read_reply(what, limit, maybe_delivered=True)

    def check_nothing_buffered(self) -> None:
        """A reply that came in the same read as the 354 (or that :meth:`receive_ready`
        fed since) is an early reply too."""
        try:
            early = self.conn.early_reply()
        except RemoteProtocolError as exc:
            raise SmtpProtocolError(f"the server broke the protocol after 354: {exc}") from exc
        if early is None:
            return
        if isinstance(early, ConnectionClosed):
            raise SmtpConnectError("the server closed the connection after 354")
        raise SmtpResponseError("the server replied during the message data", reply=early)

    async def send_data_block(self, payload: bytes | memoryview) -> None:
        """Write message data under ``data_block``; a lost connection is SmtpConnectError."""
        # Message data is never logged (only its size is worth knowing).
        try:
            with self._limit(self.timeouts.data_block, "the message data to be written"):
                await self.stream.send_all(payload)
        except SmtpTimeoutError:
            raise  # a TimeoutError, so an OSError: not a lost connection
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise SmtpConnectError(f"connection lost during the message data: {exc}") from exc

    async def _finish_data(self, writer: DataWriter, error: Exception | None) -> Reply:
        watcher = writer.watcher
        if isinstance(error, SourceFailed):
            raise error.error
        if not self.end_of_data_written:
            # The write carrying the terminator never completed (or never started): its
            # last octets never left, so the message cannot have been accepted.  What the
            # server said meanwhile is an early reply (a refusal, or 421).
            if watcher.data:
                raise await writer.early_reply(watcher.data)
            if error is not None:
                raise error
            raise SmtpConnectError("the server closed the connection during the message data")
        if not watcher.arrived.is_set():
            raise timeout_error(
                SmtpDeliveryTimeoutError,
                self.timeouts.data_termination,
                "the reply to the end of data",
            )
        if not watcher.data:
            lost = "the server closed the connection after the end of data"
            raise SmtpConnectError(lost) from watcher.error
        self.conn.receive_data(watcher.data)
        # end_of_data_reply parses it: malformed, it is "maybe delivered" as for DATA in memory.
        return await self.end_of_data_reply("the end of data")

    async def start_tls(
        self, context: ssl.SSLContext, session: ssl.SSLSession | None = None
    ) -> None:
        """Wrap the stream in TLS (RFC 3207 §4.2: the machine forgets what it learned),
        resuming ``session`` if the server agrees."""
        self.stream = await wrap_tls(self.stream, context, self.host, self.timeouts, session)
        self.tls = True
        self.conn.start_tls()
        note_tls(self.log, self.stream)

    async def quit(self) -> None:
        """QUIT politely if the session is idle, then close: shielded, within
        :attr:`Timeouts.quit <trio_smtp.Timeouts.quit>` (design rule 9).  With no limit
        (None) it is not shielded: nothing may wait for ever out of a cancel's reach."""
        limit = self.timeouts.quit
        with trio.CancelScope(shield=limit is not None):
            with trio.move_on_after(or_inf(limit)):
                try:
                    if self.reusable:
                        await self.command(Quit(), "QUIT", None)
                    await self.stream.aclose()
                except (SmtpError, ProtocolError, trio.BrokenResourceError, OSError):
                    pass  # the server may close first; the connection is done either way
        await self.aclose()

    def tls_session(self) -> ssl.SSLSession | None:
        """The TLS session, to resume on the next connection (None without TLS).  Under TLS
        1.3 the server sends its session tickets after the handshake: the session is
        resumable only once data has been read after it (the greeting, or EHLO's reply)."""
        stream = self.stream
        if not isinstance(stream, trio.SSLStream):
            return None
        session: ssl.SSLSession | None = stream.session
        return session

    async def aclose(self) -> None:
        """Close at once, without a word to the server (never blocks).

        Shielded: it is the cleanup after a send's outcome is known, so a cancel arriving
        now must not replace that outcome with ``Cancelled`` (it is delivered at the next
        checkpoint instead).  ``aclose_forcefully`` does not wait, so no deadline is needed.
        """
        self.mark_broken()
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)

    def local_address(self) -> str | None:
        """Our end's IP address (None: not over an IP socket), e.g. for EHLO's address
        literal (see :func:`~trio_smtp._io.stream.local_address`)."""
        return local_address(self.stream)

    def tls_facts(self) -> TlsFacts | None:
        """Version, cipher, the server's certificate, whether the session was resumed
        (None without TLS; see :func:`~trio_smtp._io.stream.tls_facts`)."""
        return tls_facts(self.stream)
