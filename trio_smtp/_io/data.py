"""Message data written while the server is watched (RFC 5321 §4.1.1.4, §4.2.5): a
:class:`DataWriter` that a :class:`~trio_smtp._io.transport.Transport` owns for one
``send_stream``.

Theory of operation: after 354 a large message goes out in chunks while a :class:`Watcher`
task reads the first bytes the server sends.  A reply before the terminator is an early reply
(a refusal, or 421 before closing): writing stops and the terminator never follows, so the
message is "not delivered", never "maybe" (design rule 10).  The writer learns the
transport's state through :class:`DataTarget` only (its encoders, its one data write, and
:attr:`~trio_smtp._io.transport.Transport.end_of_data_written`, set the moment the terminator's
write completed); the stream is read here only by the watcher and, after an early reply, for
the rest of that reply.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Protocol

import trio

from .._config import Timeouts
from .._errors import SmtpError, SmtpProtocolError, SmtpResponseError, SmtpTimeoutError
from ..protocol import RemoteProtocolError, ReplyParser
from .deadlines import deadline
from .progress import ProgressReporter
from .stream import RECEIVE_SIZE, TLS_RECORD_WAIT, or_inf, readable

__all__ = ["DATA_CHUNK", "DataTarget", "DataWriter", "SourceFailed", "Watcher", "slices"]

#: At most this long after a failed data write for the reason the server may have sent (it
#: is already here, or on its way), and never longer than the write's own deadline.
_REASON_WAIT = 5.0

#: Message data per write: large enough to amortise the syscall, small enough to bound memory.
DATA_CHUNK = 256 * 1024


class DataTarget(Protocol):
    """What a :class:`DataWriter` uses of its :class:`~trio_smtp._io.transport.Transport`."""

    stream: trio.abc.Stream
    tls: bool
    timeouts: Timeouts
    end_of_data_written: bool

    def encode_data(self, data: bytes) -> bytes: ...

    def encode_end_of_data(self) -> bytes: ...

    async def send_data_block(self, payload: bytes | memoryview) -> None: ...


class DataWriter:
    """Writes one message's data while its :class:`Watcher` reads (see
    :meth:`Transport.send_stream <trio_smtp._io.transport.Transport.send_stream>`)."""

    def __init__(self, transport: DataTarget, reporter: ProgressReporter | None) -> None:
        self.transport = transport
        self.watcher = Watcher(transport.stream, reporter)

    async def write_watched(self, chunks: AsyncIterator[bytes]) -> Exception | None:
        """Write while the watcher reads; return the writer's error instead of raising it.

        Only one exception can leave (design rule 9): neither task raises inside the nursery
        -- the writer hands back what stopped it, the watcher keeps its error and ends
        quietly when cancelled -- so the nursery never builds an exception group.  A cancel
        from outside is raised here, alone, once both tasks are done; the caller's
        decisions (:attr:`end_of_data_written`) then see it as a plain ``Cancelled``.
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.watcher.run)
            stopped = await self._write_then_wait(chunks)
            nursery.cancel_scope.cancel()
        if stopped is None or isinstance(stopped, Exception):
            return stopped
        raise stopped  # Cancelled (or KeyboardInterrupt): never wrapped in a group

    async def _write_then_wait(self, chunks: AsyncIterator[bytes]) -> BaseException | None:
        """The writer's task in :meth:`write_watched`: returns what stopped it, never raises.

        After the terminator it waits for the reply (``data_termination``).  After a failed
        write it waits for the reason the server may have sent before closing, at most
        ``_REASON_WAIT`` and never past that write's own ``data_block`` deadline: no wait
        here outlasts the budget
        :class:`~trio_smtp.Timeouts` gives its phase (a write that timed out waits no more).
        """
        watcher, transport = self.watcher, self.transport
        error: Exception | None = None
        try:
            try:
                with watcher.writer_scope:  # cancelled by the watcher on an early reply
                    await self._write_data(chunks)
            except SourceFailed as exc:
                return exc  # our side failed: nothing to wait for
            except Exception as exc:
                error = exc
            if not watcher.arrived.is_set():
                seconds = transport.timeouts.data_termination
                if error is not None:
                    # A failed write's reason, if the server sent one, is here or on its
                    # way: a short wait, and never past the write's own deadline.
                    left = watcher.write_deadline - trio.current_time()
                    seconds = max(0.0, min(left, _REASON_WAIT))
                try:
                    with deadline(seconds, "the reply to the end of data"):
                        await watcher.arrived.wait()
                except SmtpTimeoutError:
                    pass  # nothing came: _finish_data says what that means
        except BaseException as exc:  # a cancel from outside: write_watched raises it
            return exc
        return error

    async def _write_data(self, chunks: AsyncIterator[bytes]) -> None:
        # One chunk of look-ahead: the last chunk goes in the same write as the terminator.
        watcher, transport = self.watcher, self.transport
        pending: bytes | None = None
        size = 0  # the message octets in pending (before dot-stuffing)
        while True:
            try:
                chunk = await anext(chunks, None)
            except Exception as exc:
                raise SourceFailed(exc) from exc
            if watcher.arrived.is_set():
                return
            if chunk is None:
                break
            if pending:
                _report(watcher.reporter, size, last=False)
                await self._watched_block(pending)
            pending, size = transport.encode_data(chunk), len(chunk)
        if readable(transport.stream):
            # The server already spoke or closed: the watcher is reading it; the terminator
            # must not follow (design rule 10: not delivered, not "maybe").
            with trio.move_on_after(TLS_RECORD_WAIT if transport.tls else math.inf):
                await watcher.arrived.wait()
                return
        payload = (pending or b"") + transport.encode_end_of_data()
        _report(watcher.reporter, size, last=True)
        watcher.terminator_started = True
        await self._watched_block(payload)
        transport.end_of_data_written = True  # only now can the server have it all

    async def _watched_block(self, payload: bytes) -> None:
        # The deadline send_data_block applies, kept for the wait after a failed write.
        transport = self.transport
        self.watcher.write_deadline = trio.current_time() + or_inf(transport.timeouts.data_block)
        await transport.send_data_block(payload)

    async def early_reply(self, data: bytes) -> SmtpError:
        """Parse what the server said before the terminator; the rest of a multi-line reply
        is read within ``data_block`` (as a BDAT chunk's reply is).  The connection is
        closed by the caller."""
        parser = ReplyParser()
        parser.receive_data(data)
        reply = None
        try:
            with deadline(self.transport.timeouts.data_block, "the rest of an early reply"):
                while (reply := parser.next_reply()) is None:
                    more = await self.transport.stream.receive_some(RECEIVE_SIZE)
                    if not more:
                        break
                    parser.receive_data(bytes(more))
        except SmtpTimeoutError:
            pass  # (an OSError: before the next clause) the reply stays incomplete
        except (RemoteProtocolError, trio.BrokenResourceError, OSError) as exc:
            return SmtpProtocolError(f"unexpected bytes from the server during the data: {exc}")
        if reply is None:
            return SmtpProtocolError("unexpected bytes from the server during the message data")
        return SmtpResponseError("the server replied during the message data", reply=reply)


class SourceFailed(Exception):
    """The body's source (a file, an async iterable) raised: carried out of the nursery."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _report(reporter: ProgressReporter | None, size: int, *, last: bool) -> None:
    """Tell the reporter, if any; what it raises stops the data as a failing source does."""
    if reporter is None:
        return
    try:
        if last:
            reporter.finish(size)
        else:
            reporter.wrote(size)
    except Exception as exc:
        raise SourceFailed(exc) from exc


async def slices(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), DATA_CHUNK):
        yield bytes(view[start : start + DATA_CHUNK])


class Watcher:
    """Reads the first bytes the server sends during DATA (see Transport.send_message)."""

    def __init__(self, stream: trio.abc.Stream, reporter: ProgressReporter | None) -> None:
        self.stream = stream
        #: Told of the data written (None: nobody asked for progress).
        self.reporter = reporter
        self.writer_scope = trio.CancelScope()
        self.arrived = trio.Event()
        self.terminator_started = False
        #: When the write in progress (or the last one) must be done (Trio time); before
        #: any write, -inf: a failure then has no reason from the server to wait for.
        self.write_deadline = -math.inf
        self.data = b""
        self.error: Exception | None = None

    async def run(self) -> None:
        """Never raises (see :meth:`DataWriter.write_watched`)."""
        try:
            self.data = bytes(await self.stream.receive_some(RECEIVE_SIZE))
        except trio.Cancelled:
            # The writer is done, or a cancel from outside: the writer raises that one.
            return
        except Exception as exc:  # a lost connection: reported by _finish_data
            self.error = exc
        self.arrived.set()
        if not self.terminator_started:
            # Early reply or EOF: stop writing; the terminator must never follow.
            self.writer_scope.cancel()
