"""Server replies: bytes -> :class:`Reply`.

Theory of operation: bytes from the server go into a :class:`ReceiveBuffer` (O(n): a
bytearray plus a scan offset, never re-scanning what it already looked at; cf.
h11/_receivebuffer.py).  :class:`ReplyParser` takes whole lines from it and assembles
multi-line replies (RFC 5321 §4.2.1): ``NNN-text`` continues, ``NNN text`` or a bare ``NNN``
ends.  Everything is bounded by :class:`ReplyLimits`; any violation raises
:class:`~trio_smtp.protocol.RemoteProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._commands import Command

__all__ = ["ReceiveBuffer", "Reply", "ReplyLimits", "ReplyParser", "format_reply"]


@dataclass(frozen=True, slots=True)
class ReplyLimits:
    """Bounds on what the server may send us in one reply."""

    #: Longest line, including the code and CRLF (RFC 5321 §4.5.3.1.5 says 512; we allow more).
    max_line_length: int = 4096
    #: Most lines in one multi-line reply (EHLO replies are the longest in practice).
    max_lines: int = 128
    #: Most octets in one reply, all lines together.
    max_reply_size: int = 65536


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete SMTP reply.

    ``lines`` holds the text of each line without the code, separator and line end.
    ``enhanced_status`` is the RFC 3463 code (``"2.1.5"``) taken from the first line when
    its class digit agrees with the reply code, else ``None``.  ``command`` is the command
    this reply answers (``None`` for the greeting); it does not take part in comparisons.
    """

    code: int
    lines: tuple[str, ...] = ("",)
    enhanced_status: str | None = None
    command: Command | None = field(default=None, compare=False, repr=False)

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


def format_reply(code: int, text: str | list[str] | tuple[str, ...] = "") -> bytes:
    """Serialise a reply as a server would (used by :mod:`trio_smtp.testing`).

    Multi-line text (a list, or a string with ``\\n``) becomes ``NNN-`` lines ending with
    ``NNN <last>``.  Raises :class:`~trio_smtp.protocol.LocalProtocolError` for a code outside
    200-599 or text containing CR or NUL.
    """
    raise NotImplementedError


class ReceiveBuffer:
    """An O(n) byte buffer that hands out complete lines (cf. h11/_receivebuffer.py)."""

    def __init__(self) -> None:
        raise NotImplementedError

    def __bool__(self) -> bool:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        raise NotImplementedError

    def next_line(self, max_length: int) -> bytes | None:
        """Remove and return one line including its end (CRLF, or a lone LF), or ``None``.

        A lone CR is never a line end.  Raises RemoteProtocolError when no line end is
        found within ``max_length`` octets.
        """
        raise NotImplementedError

    def take_all(self) -> bytes:
        """Remove and return everything buffered."""
        raise NotImplementedError


class ReplyParser:
    """Incremental parser: feed bytes, take complete replies."""

    def __init__(self, limits: ReplyLimits | None = None) -> None:
        raise NotImplementedError

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server."""
        raise NotImplementedError

    def next_reply(self) -> Reply | None:
        """Return the next complete reply, or ``None`` when more bytes are needed.

        Raises RemoteProtocolError on a malformed or over-limit reply; after that the parser
        is unusable.
        """
        raise NotImplementedError

    @property
    def buffered(self) -> int:
        """Octets received but not yet part of a returned reply."""
        raise NotImplementedError
