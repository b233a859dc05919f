"""The SMTP connection over a :class:`~trio_smtp._io.channel.Channel`: the message data and
its end, the connection's reuse, STARTTLS, QUIT and closing.

Theory of operation: a :class:`Transport` is a :class:`~trio_smtp._io.channel.Channel` (the
only reader and writer of the stream, every step under its phase deadline, errors mapped
once) plus what one connection knows between and across transactions.  After 354 a message
that fits in one write goes with its terminator in one ``send_all``; a larger one, or a
streamed body, is a :class:`~trio_smtp._io.data.DataWriter` writing while the server is
watched.  :attr:`Transport.end_of_data_written` is set the moment the write carrying the end
of data completed: from then on a loss is "maybe delivered" (design rule 10).  A connection
is reused only while :attr:`Transport.reusable`, after :meth:`Transport.check_idle` looked
at it (design rules 11 and 12).

Connecting is :func:`~trio_smtp._io.connect.open_transport`; TLS and the looks at a bare
stream are in :mod:`trio_smtp._io.stream`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from .._config import Timeouts
from .._errors import (
    SmtpConnectError,
    SmtpDeliveryTimeoutError,
    SmtpError,
    SmtpProtocolError,
    SmtpResponseError,
    SmtpTimeoutError,
)
from ..protocol import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    ProtocolError,
    Quit,
    RemoteProtocolError,
    Reply,
    State,
)
from .channel import Channel
from .data import DATA_CHUNK, DataWriter, SourceFailed, slices
from .deadlines import deadline, map_errors, timeout_error
from .log import ProtocolLog
from .progress import ProgressReporter
from .stream import (
    TlsFacts,
    local_address,
    note_tls,
    peer_is_loopback,
    readable,
    tls_facts,
    wrap_tls,
)

__all__ = ["StreamFactory", "Transport", "deadline", "map_errors"]

#: A user-supplied way to open the connection (instead of TCP to host:port).
StreamFactory = Callable[[], Awaitable[trio.abc.Stream]]


class Transport(Channel):
    """One SMTP connection: a :class:`~trio_smtp._io.channel.Channel` and what the session
    knows across its transactions."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: ClientConnection,
        *,
        host: str,
        timeouts: Timeouts,
        log: ProtocolLog | None = None,
    ) -> None:
        super().__init__(stream, conn, host=host, timeouts=timeouts, log=log)
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
        #: True once :meth:`hand_out` gave the connection to a send or a batch.
        self.handed_out = False

    def hand_out(self) -> None:
        """The connection is given to a send or a batch: from the second time on, it is
        :attr:`reused`.  Opening it does not count: a pool connects before the lease
        returns, and a connection opened for this very send was never idle."""
        if self.handed_out:
            self.reused = True
        self.handed_out = True

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

    @property
    def reusable(self) -> bool:
        """Not broken, and between transactions: safe for the next message."""
        return not self.broken and self.conn.state is State.READY

    async def check_idle(self) -> bool:
        """Before a kept connection takes a new transaction: True when it is still fit;
        False (and the connection broken) when the server closed it, said 421, or sent
        anything at all since its last reply (design rules 11 and 12)."""
        if not self.reusable:
            return False
        conn = self.conn
        if not conn.buffered and not conn.eof_received and not readable(self.stream):
            return True  # nothing arrived since the last reply: what next_event would say
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

    @staticmethod
    def fits_one_write(data: bytes) -> bool:
        """Whether message data goes with its terminator in one write (:meth:`send_message`)
        rather than in chunks while the server is watched (:meth:`send_stream`)."""
        return len(data) <= DATA_CHUNK

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
            if readable(self.stream):
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
        # Nothing complete was buffered before the write (check_nothing_buffered), and
        # nothing was read since: the reply is read, then parsed.
        what = "the end of data"
        reply = await self.exchange(
            None, what, self.timeouts.data_termination, SmtpDeliveryTimeoutError
        )
        await self.check_in_step(what)
        return reply

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
        try:
            with self.phases_suspended():
                self.check_nothing_buffered()
                error = await writer.write_watched(chunks)
                return await self._finish_data(writer, error)
        except BaseException:
            self.mark_broken()
            raise

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
            with self.phase(self.timeouts.data_block, "the message data to be written"):
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
        self.stream = await wrap_tls(
            self.stream, context, self.host, self.timeouts, session, phase=self.phase
        )
        self.tls = True
        self.conn.start_tls()
        note_tls(self.log, self.stream)

    async def quit(self) -> None:
        """QUIT politely if the session is idle, then close: shielded, within
        :attr:`Timeouts.quit <trio_smtp.Timeouts.quit>` (design rule 9).  With no limit
        (None) it is not shielded: nothing may wait for ever out of a cancel's reach."""
        limit = self.timeouts.quit
        closed = False
        try:
            with deadline(limit, "QUIT", shield=limit is not None):
                if self.reusable:
                    await self.command(Quit(), "QUIT", None)
                await self.stream.aclose()
                closed = True
        except (SmtpError, ProtocolError, trio.BrokenResourceError, OSError):
            pass  # a timeout, or the server closed first: the connection is done anyway
        if closed:  # nothing is left to close by force (that costs a cancel scope and a raise)
            self.mark_broken()
        else:
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
