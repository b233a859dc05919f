"""Bounded reading and batched writing for one server connection.

Input goes into one bytearray; commands are taken line by line from it, so a pipelined batch
(RFC 2920) is answered in order.  Replies are queued and written together just before the
server has to wait for more input: one write per batch, so the replies queued are at most
those to one read's worth of commands (and the junk-command limit keeps long replies such as
EHLO's few).  Every read is bounded — the server reads only when it needs more, at most
``RECEIVE_SIZE`` at a time, an over-long line is discarded up to its end, message data
past the limit is dropped while the end of data is still looked for — so a client cannot make
the server hold unbounded memory, however much it pipelines.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import trio

__all__ = ["ClientTimeout", "DataResult", "PeerClosed", "ServerIO"]

RECEIVE_SIZE = 65536

# RFC 5321 §4.5.2: the end of data is a line holding only ".".  A bare-LF variant is matched
# too, so that a broken client's message can be found, refused and the session kept in step.
_END_OF_DATA = re.compile(rb"\n\.\r?\n")


class PeerClosed(Exception):
    """The client closed its side of the connection."""


class ClientTimeout(Exception):
    """The client sent nothing for the idle timeout (RFC 5321 §4.5.3.2.7)."""


@dataclass(frozen=True, slots=True)
class DataResult:
    """What :meth:`ServerIO.read_data` found.

    ``body`` is the raw (still dot-stuffed) data up to and including the line end before the
    terminator, or ``None`` when it exceeded the limit and was dropped.  ``terminator`` is
    the terminator as received (``b".\\r\\n"`` unless the client used a bare LF).
    """

    body: bytes | None
    terminator: bytes
    received: int


class ServerIO:
    """The connection's stream plus its input and output buffers."""

    def __init__(self, stream: trio.abc.Stream, *, read_timeout: float = math.inf) -> None:
        self.stream = stream
        #: Seconds one read may wait for the client before :class:`ClientTimeout`.
        self.read_timeout = read_timeout
        self._in = bytearray()
        self._out = bytearray()

    # -- writing ---------------------------------------------------------------------------

    def queue(self, data: bytes) -> None:
        """Queue bytes to be written with the next :meth:`flush`."""
        self._out += data

    async def flush(self) -> None:
        """Write everything queued, in one write."""
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            await self.stream.send_all(data)

    async def drip(self, data: bytes, interval: float) -> None:
        """Flush, then write ``data`` one byte per write, ``interval`` seconds apart."""
        await self.flush()
        for i in range(len(data)):
            await self.stream.send_all(data[i : i + 1])
            await trio.sleep(interval)

    # -- reading ---------------------------------------------------------------------------

    def has_line(self) -> bool:
        """Whether a complete line is already buffered (the client pipelined)."""
        return b"\n" in self._in

    def take_buffered(self) -> bytes:
        """Remove and return every byte read and not yet used."""
        data = bytes(self._in)
        self._in.clear()
        return data

    async def _fill(self) -> None:
        # Replies go out before we wait: this is what batches a pipelined group's replies.
        await self.flush()
        data: bytes | bytearray = b""
        with trio.move_on_after(self.read_timeout) as scope:
            data = await self.stream.receive_some(RECEIVE_SIZE)
        if scope.cancelled_caught:
            raise ClientTimeout
        if not data:
            raise PeerClosed
        self._in += data

    async def read_line(self, max_length: int) -> bytes | None:
        """One line, its LF (and CR) included; ``None`` if it was longer than ``max_length``.

        An over-long line is read to its end and dropped, never held in memory whole.
        """
        scanned = 0
        discarding = False
        while True:
            end = self._in.find(b"\n", scanned)
            if end >= 0:
                line = bytes(self._in[: end + 1])
                del self._in[: end + 1]
                return None if discarding or len(line) > max_length else line
            if len(self._in) > max_length:
                discarding = True
                self._in.clear()
            scanned = len(self._in)
            await self._fill()

    async def read_exact(self, count: int, *, keep: bool) -> bytes:
        """Read exactly ``count`` octets; return them if ``keep``, else drop them."""
        kept = bytearray()
        remaining = count
        while remaining:
            if not self._in:
                await self._fill()
            piece = self._in[:remaining]
            del self._in[:remaining]
            remaining -= len(piece)
            if keep:
                kept += piece
        return bytes(kept)

    async def read_data(self, limit: int) -> DataResult:
        """Read DATA up to the end-of-data line, keeping at most ``limit`` octets of message.

        The limit is on the message as it will be recorded, dot-un-stuffed (RFC 5321
        §4.5.2): the raw window, which still holds the stuffed dots, is at most a third
        larger (a line of "." is "..\r\n" on the wire).  Past the limit the data is dropped
        as it arrives while the terminator is still looked for.
        """
        # The window starts with a virtual LF so that an empty message (".\r\n" at once)
        # matches the same pattern as a terminator after a line.
        window = bytearray(b"\n")
        overflow = False
        received = 0
        scanned = 0
        dots = 0  # lines in the window that start with ".", each carrying one stuffed dot
        while True:
            if not self._in:
                await self._fill()
            received += len(self._in)
            window += self._in
            self._in.clear()
            found = _END_OF_DATA.search(window, max(0, scanned - 3))
            if found is not None:
                self._in[:0] = window[found.end() :]
                received -= len(window) - found.end()
                body = None if overflow else bytes(window[1 : found.start() + 1])
                return DataResult(body, bytes(window[found.start() + 1 : found.end()]), received)
            # A "\n." that starts at scanned - 1 was split across reads: not counted yet.
            dots += window.count(b"\n.", max(0, scanned - 1))
            if overflow or len(window) - 1 - dots > limit:
                # Keep only what a terminator split across reads could start with.
                overflow = True
                del window[:-3]
            scanned = len(window)
