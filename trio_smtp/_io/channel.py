"""One stream and its sans-IO machine: the only reads and writes, each under its phase's
deadline, and the looks at what the server sent unasked.

Theory of operation: a :class:`Channel` pairs one ``trio.abc.Stream`` with one sans-IO
:class:`~trio_smtp.protocol.ClientConnection`.  Writing is ``conn.send(command)`` (through
:meth:`Channel.encode`, which logs the command object) then one ``send_all`` per pipelined
group; reading is httpcore's loop: ``next_event()``, and on NEED_DATA read a large chunk
and feed it.  :meth:`Channel.exchange` is the one write-then-read: the write and the whole
reply under one phase deadline (RFC 5321 §4.5.3.2), not each read; the replies of one write
that arrived together are taken in one pass with no await (:meth:`Channel.read_replies`).

Two rules make a half-spoken session impossible to reuse: any exception or cancellation inside
an I/O step marks the channel broken (and tells the machine through ``send_failed()``), and
the client closes a transport that is not reusable.  Errors from Trio, the ``ssl`` module and
the protocol core become the library's exceptions in :func:`mapped_error` only; it and the
deadlines live in :mod:`trio_smtp._io.deadlines`.

Nothing unsolicited is read as a reply (design rules 10-12): before a write the socket is
looked at without blocking (:meth:`Channel.receive_ready`) and the core refuses to encode
after a reply nobody asked for; right after the reply that decides a message, one more look
(:meth:`Channel.check_in_step`).  :class:`~trio_smtp._io.transport.Transport` builds the
session's steps on this: the message data, reuse, STARTTLS, QUIT.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import trio

from .._config import Timeouts
from .._errors import (
    SmtpConnectError,
    SmtpDeliveryTimeoutError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpProtocolError,
    SmtpTimeoutError,
)
from ..protocol import (
    NEED_DATA,
    ClientConnection,
    Command,
    ConnectionClosed,
    Extensions,
    ProtocolError,
    RemoteProtocolError,
    Reply,
    State,
)
from .deadlines import Phases, Watchdog, deadline, mapped_error
from .log import ProtocolLog
from .stream import RECEIVE_SIZE, TLS_RECORD_WAIT, readable

__all__ = ["Channel"]


class Channel:
    """One stream and its sans-IO machine: encode, write, read replies, look (see the
    module docstring); :class:`~trio_smtp._io.transport.Transport` is the one subclass."""

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
        self._broken = False
        self._phases: Phases | None = None
        self._watchdog: Watchdog | None = None  # the run's, looked up once

    def phases(self) -> Phases:
        """One deadline scope for a transaction of in-memory data (see :class:`Phases`)."""
        watchdog = self._watchdog
        if watchdog is None:
            watchdog = self._watchdog = Watchdog.current()
        return Phases(self._set_phases, watchdog)

    def _set_phases(self, phases: Phases | None) -> None:
        self._phases = phases

    def phase(
        self, seconds: float | None, what: str, error: type[SmtpTimeoutError] = SmtpTimeoutError
    ) -> Phases:
        """The deadline of one phase: the transaction's :class:`Phases`, armed again, when
        one is open; otherwise a scope of its own (:func:`deadline`)."""
        phases = self._phases
        if phases is None:
            return deadline(seconds, what, error)
        phases.arm(seconds, what, error)
        return phases

    @contextmanager
    def phases_suspended(self) -> Iterator[None]:
        """Inside, every step has a deadline of its own, not the open :class:`Phases`'s
        (whose current phase is disarmed meanwhile): a streamed source's reads are not
        phases (:meth:`Transport.send_stream
        <trio_smtp._io.transport.Transport.send_stream>`)."""
        phases, self._phases = self._phases, None
        try:
            if phases is not None:
                phases.arm(None, "the message data", SmtpTimeoutError)
            yield
        finally:
            self._phases = phases

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

    @property
    def broken(self) -> bool:
        """True once a write or read failed or was cancelled: close, never reuse."""
        return self._broken

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
        to raise (``exc`` as :func:`mapped_error` maps it, caught instead of entering a
        context manager for every step)."""
        self.mark_broken()
        error = mapped_error(exc, what, tls=tls)
        if error is None:
            return exc
        error.__cause__ = exc
        return error

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

    async def write(self, data: bytes, what: str, limit: float | None) -> None:
        """Write ``data`` in one ``send_all`` under ``limit`` seconds."""
        try:
            with self.phase(limit, what):
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
            reply = await self.exchange(None, what, limit, timeout)
        if maybe_delivered:
            await self.check_in_step(what)
        return reply

    async def exchange(
        self,
        data: bytes | None,
        what: str,
        limit: float | None,
        error: type[SmtpTimeoutError] = SmtpTimeoutError,
        *,
        tls: bool = False,
    ) -> Reply:
        """Write ``data`` and read the next reply, both under one deadline (RFC 5321
        §4.5.3.2: it covers the whole reply, not each read): httpcore's loop, next_event()
        and on NEED_DATA one large read fed to the machine.  ``data`` None: nothing to
        write, and the caller found nothing complete buffered, so the first step is a read.
        Any failure or cancel breaks the connection and is mapped (:func:`mapped_error`)."""
        conn, stream = self.conn, self.stream
        try:
            with self.phase(limit, what, error):
                if data is not None:
                    await stream.send_all(data)
                    event = conn.next_event()  # a reply may be parsed already (pipelining)
                else:
                    event = NEED_DATA
                while type(event) is not Reply:
                    if isinstance(event, ConnectionClosed):
                        raise SmtpConnectError(f"the server closed the connection during {what}")
                    conn.receive_data(bytes(await stream.receive_some(RECEIVE_SIZE)))
                    event = conn.next_event()
        except BaseException as exc:
            raise self._failed(exc, what, tls=tls)  # noqa: B904 -- _failed sets the cause
        self.log.log_received(event)
        return event

    async def check_in_step(self, what: str) -> None:
        """After the reply that decides a message's outcome (design rules 10 and 11): if
        what has already arrived holds more than the replies owed, the replies are out of
        step with the commands -- a stray line came first, and the reply just read may
        answer another command (a ``554`` taken for a ``250``, or the reverse).  Then the
        outcome cannot be known: SmtpDeliveryUnknownError, the connection broken.

        Only what is already here is looked at (no wait): a stray whose reply is still on
        the way is found before the next write instead (:meth:`receive_ready`), after this
        message's outcome was given.  A close or reset now says nothing about this reply
        and only keeps the connection from being reused."""
        conn = self.conn
        if readable(self.stream):
            owed = bool(conn.pending)  # (a failed read clears the machine's queue)
            try:
                await self.receive_ready(what, eof_ok=True)
            except SmtpError:
                if owed:
                    raise  # the replies still owed are lost with the connection
                return
        try:
            conn.check_unsolicited(f"the reply to {what} was taken")
        except RemoteProtocolError as exc:
            self.mark_broken()
            unknown = SmtpDeliveryUnknownError(
                f"the server sent more replies than commands around {what} ({exc}): "
                "its replies are out of step, so the message may have been delivered"
            )
            raise unknown from exc

    async def command(
        self, command: Command, what: str, limit: float | None, *, tls: bool = False
    ) -> Reply:
        """Send one command and read its reply, both under one deadline (a group of one,
        after a look at what the server already sent: see :meth:`receive_ready`)."""
        await self.receive_ready(what)
        data = self.encode(command, what)  # LocalProtocolError here: nothing was written
        return await self.exchange(data, what, limit, tls=tls)

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
        replies.append(await self.exchange(data, what, limit, tls=tls))
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
                reply = await self.exchange(None, what, limit)
            replies.append(reply)
