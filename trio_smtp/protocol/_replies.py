"""Server replies: bytes -> :class:`Reply`.

Theory of operation: bytes from the server go into a :class:`ReceiveBuffer` (O(n): a
bytearray plus a scan offset, never re-scanning what it already looked at; cf.
h11/_receivebuffer.py).  :class:`ReplyParser` takes whole lines from it and assembles
multi-line replies (RFC 5321 §4.2.1): ``NNN-text`` continues, ``NNN text`` or a bare ``NNN``
ends.  Everything is bounded by :class:`ReplyLimits`; any violation raises
:class:`~trio_smtp.protocol.RemoteProtocolError`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from ._errors import RemoteProtocolError
from ._frozen import Frozen, set_field

if TYPE_CHECKING:
    from ._commands import Command

__all__ = ["ReceiveBuffer", "Reply", "ReplyLimits", "ReplyParser"]


class ReplyLimits(Frozen):
    """Bounds on what the server may send us in one reply."""

    __slots__ = ("max_line_length", "max_lines", "max_reply_size")
    #: Longest line, including the code and CRLF (RFC 5321 §4.5.3.1.5 says 512; we allow more).
    max_line_length: int
    #: Most lines in one multi-line reply (EHLO replies are the longest in practice).
    max_lines: int
    #: Most octets in one reply, all lines together.
    max_reply_size: int

    def __init__(
        self, max_line_length: int = 4096, max_lines: int = 128, max_reply_size: int = 65536
    ) -> None:
        set_field(self, "max_line_length", max_line_length)
        set_field(self, "max_lines", max_lines)
        set_field(self, "max_reply_size", max_reply_size)


class Reply(Frozen):
    """One complete SMTP reply.

    ``lines`` holds the text of each line exactly as the server sent it after the code and
    separator, without the line end; an RFC 3463 enhanced status code stays in the text
    (``"2.1.5 Ok"``).  ``enhanced_status`` is that code (``"2.1.5"``) taken from the first
    line when its class digit agrees with the reply code, else ``None``.  Text that is not
    UTF-8 is decoded with ``errors="replace"`` (U+FFFD), so it can always be printed.
    ``command`` is the command this reply answers (``None`` for the greeting); it does not
    take part in comparisons.
    """

    __slots__ = ("code", "command", "enhanced_status", "lines")
    _not_compared: ClassVar[frozenset[str]] = frozenset({"command"})
    code: int
    lines: tuple[str, ...]
    enhanced_status: str | None
    command: Command | None

    def __init__(
        self,
        code: int,
        lines: tuple[str, ...] = ("",),
        enhanced_status: str | None = None,
        command: Command | None = None,
    ) -> None:
        set_field(self, "code", code)
        set_field(self, "lines", lines)
        set_field(self, "enhanced_status", enhanced_status)
        set_field(self, "command", command)

    @property
    def text(self) -> str:
        """The reply's text, lines joined with ``"\\n"``."""
        return "\n".join(self.lines)

    @property
    def is_positive(self) -> bool:
        """2xx or 3xx."""
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: try again later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: do not retry as is."""
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


# RFC 3463 §2: class "." subject "." detail, followed by SP or the end of the text.
_ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?= |$)")

_HYPHEN = 0x2D

# Compact the buffer once this many consumed octets sit at its front (amortised O(n)).
_COMPACT_THRESHOLD = 4096


class ReceiveBuffer:
    """An O(n) byte buffer that hands out complete lines (cf. h11/_receivebuffer.py).

    Consumed lines are not deleted one by one (that would move the tail each time, O(n²)
    for a buffer of many short lines): a start offset advances and the consumed prefix is
    dropped in one go when it grows large.  The search for a line end resumes where the
    previous search stopped, so no octet is scanned twice.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0  # first unconsumed octet
        self._scanned = 0  # octets after _start already known to hold no LF

    def __bool__(self) -> bool:
        return len(self) > 0

    def __len__(self) -> int:
        return len(self._data) - self._start

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        self._data += data

    def next_line(self, max_length: int) -> bytes | None:
        """Remove and return one line including its end (CRLF, or a lone LF), or ``None``.

        A lone CR is never a line end.  Raises RemoteProtocolError when no line end is
        found within ``max_length`` octets.
        """
        data, start = self._data, self._start
        # Never look past max_length: a longer line is an error whatever follows.
        idx = data.find(b"\n", start + self._scanned, start + max_length)
        if idx < 0:
            unscanned = len(data) - start  # len(self), without the call (a reply awaited)
            if unscanned >= max_length:
                raise RemoteProtocolError(f"reply line longer than {max_length} octets")
            self._scanned = unscanned
            return None
        end = idx + 1
        line = bytes(data[start:end])
        self._scanned = 0
        if end == len(data):  # the usual case: the last buffered line
            data.clear()
            self._start = 0
        else:
            self._start = end
            self._compact()
        return line

    def take_all(self) -> bytes:
        """Remove and return everything buffered."""
        out = bytes(self._data[self._start :])
        self._data.clear()
        self._start = self._scanned = 0
        return out

    def _compact(self) -> None:
        if self._start == len(self._data):
            self._data.clear()
            self._start = 0
        elif self._start >= _COMPACT_THRESHOLD and self._start * 2 >= len(self._data):
            del self._data[: self._start]
            self._start = 0


class ReplyParser:
    """Incremental parser: feed bytes, take complete replies.

    Grammar (RFC 5321 §4.2): ``Reply-code [("-" / SP) textstring] CRLF``, where the code is
    three digits with the first in 2-5, every line of one reply carries the same code, and
    the last line has SP or nothing after the code.  A lone LF is accepted as a line end
    (liberal in what we accept); a lone CR is text, never a line end.
    """

    def __init__(self, limits: ReplyLimits | None = None) -> None:
        self._limits = limits or ReplyLimits()
        self._buffer = ReceiveBuffer()
        self._code = 0  # code of the reply being assembled, 0 between replies
        self._lines: list[str] = []
        self._size = 0  # octets of the lines assembled so far
        self._broken: RemoteProtocolError | None = None
        # One-line replies recur verbatim ("250 2.1.0 Ok", "354 End data ..."): a Reply is
        # immutable and a function of the line's bytes alone, so this parser keeps the ones
        # it has seen and skips parsing, decoding and building them again (about 1.5 us of
        # 2.5 us per reply).  Bounded: emptied when full, so varying lines (queue ids) cost
        # at most one clear per _CACHE_SIZE.
        self._one_line: dict[bytes, Reply] = {}
        # A line this long or shorter is within every limit as a one-line reply (and short
        # enough to be kept in _one_line).
        limits = self._limits
        self._cached_limit = (
            min(_CACHED_LINE_LENGTH, limits.max_line_length, limits.max_reply_size)
            if limits.max_lines
            else 0
        )

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server."""
        self._buffer.feed(data)

    def next_reply(self) -> Reply | None:
        """Return the next complete reply, or ``None`` when more bytes are needed.

        Raises RemoteProtocolError on a malformed or over-limit reply; after that the parser
        is unusable.
        """
        if self._broken is not None:
            raise RemoteProtocolError(f"reply parser is broken: {self._broken}")
        try:
            return self._next_reply()
        except RemoteProtocolError as exc:
            self._broken = exc
            raise

    @property
    def buffered(self) -> int:
        """Octets received but not yet part of a returned reply."""
        # Asked before every command and around every reply parsed ahead: the buffer's
        # length is read here rather than through ReceiveBuffer.__len__ (two calls more).
        buffer = self._buffer
        return self._size + len(buffer._data) - buffer._start

    def _next_reply(self) -> Reply | None:
        limits = self._limits
        while True:
            raw = self._buffer.next_line(limits.max_line_length)
            if raw is None:
                return None
            if not self._code and len(raw) <= self._cached_limit:
                # A one-line reply within every limit: if seen before, it is parsed already.
                reply = self._one_line.get(raw)
                if reply is not None:
                    return reply
            code, last, text = _parse_line(raw)
            if self._code and code != self._code:
                raise RemoteProtocolError(
                    f"reply line with code {code} inside a {self._code} reply"
                )
            self._code = code
            self._lines.append(text)
            self._size += len(raw)
            if len(self._lines) > limits.max_lines:
                raise RemoteProtocolError(f"reply longer than {limits.max_lines} lines")
            if self._size > limits.max_reply_size:
                raise RemoteProtocolError(f"reply larger than {limits.max_reply_size} octets")
            if last:
                reply = self._finish()
                if len(reply.lines) == 1 and len(raw) <= self._cached_limit:
                    self._remember(raw, reply)
                return reply

    def _remember(self, raw: bytes, reply: Reply) -> None:
        known = self._one_line
        if len(known) >= _CACHE_SIZE:
            known.clear()
        known[raw] = reply

    def _finish(self) -> Reply:
        code, lines = self._code, tuple(self._lines)
        self._code, self._lines, self._size = 0, [], 0
        return Reply(code, lines, _enhanced_status(code, lines[0]))


#: How many one-line replies a parser keeps, and the longest line it keeps.
_CACHE_SIZE = 64
_CACHED_LINE_LENGTH = 128


# RFC 5321 §4.2: three ASCII digits, the first 2-5, then "-", SP, or the end of the line.
_LINE_HEAD = re.compile(rb"[2-5][0-9][0-9](?:[ -]|\r?\n\Z)")


def _parse_line(raw: bytes) -> tuple[int, bool, str]:
    """One reply line -> (code, is_last, text).  ``raw`` ends in LF."""
    crlf = raw.endswith(b"\r\n")
    if _LINE_HEAD.match(raw) is None:
        raise RemoteProtocolError(f"malformed reply line {_excerpt(raw[: -2 if crlf else -1])}")
    # A bare code ("250\r\n") gives raw[4:-2] == b"".
    text = (raw[4:-2] if crlf else raw[4:-1]).decode("utf-8", errors="replace")
    return int(raw[:3]), raw[3] != _HYPHEN, text


def _enhanced_status(code: int, first_line: str) -> str | None:
    # RFC 3463 §2 / RFC 2034 §4: the class digit must equal the reply's first digit.
    match = _ENHANCED.match(first_line)
    if match is None or match.group(1) != str(code)[0]:
        return None
    return match.group(0)


def _excerpt(line: bytes) -> str:
    return repr(line[:60]) + ("..." if len(line) > 60 else "")
