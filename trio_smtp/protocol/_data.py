"""Message data -> DATA bytes (RFC 5321 §4.5.2) and BDAT framing (RFC 3030).

Theory of operation: the encoder works on whole buffers with ``bytes.replace``-style passes
(no per-line Python loop).  Every bare CR and bare LF becomes CRLF, then every line that
starts with "." gets one more ".".  The only state carried between chunks is whether the
previous chunk ended in CR and whether the next byte starts a line, so the output is the same
under every chunking of the input.  :meth:`DataEncoder.finish` adds a final CRLF if the body
lacked one, then the terminator ``.CRLF``; nowhere else can ``CRLF.CRLF`` appear.
"""

from __future__ import annotations

import enum

__all__ = ["BodyKind", "DataEncoder", "BodyInspector", "decode_data", "encode_data"]


class BodyKind(enum.Enum):
    """What a body needs from the server (RFC 6152, RFC 3030)."""

    #: Only ASCII, lines within 998 octets: plain SMTP.
    SEVEN_BIT = "7BIT"
    #: Octets >= 128, lines within 998 octets: BODY=8BITMIME.
    EIGHT_BIT = "8BITMIME"
    #: NUL, or lines over 998 octets: only BODY=BINARYMIME with BDAT carries it unchanged.
    BINARY = "BINARYMIME"


class BodyInspector:
    """Streaming classification of a body into a :class:`BodyKind`, chunk by chunk."""

    def __init__(self) -> None:
        raise NotImplementedError

    def feed(self, chunk: bytes | memoryview) -> None:
        raise NotImplementedError

    @property
    def kind(self) -> BodyKind:
        raise NotImplementedError


class DataEncoder:
    """Streaming DATA encoder: ``encode(chunk)`` any number of times, then ``finish()``."""

    def __init__(self) -> None:
        raise NotImplementedError

    def encode(self, chunk: bytes | memoryview) -> bytes:
        """CRLF-normalise and dot-stuff ``chunk``; may hold back a trailing CR."""
        raise NotImplementedError

    def finish(self) -> bytes:
        """What is held back, a final CRLF if missing, and ``.\\r\\n``."""
        raise NotImplementedError


def encode_data(body: bytes) -> bytes:
    """One-shot: the whole DATA payload for ``body``, terminator included."""
    raise NotImplementedError


def decode_data(data: bytes) -> bytes:
    """Server side / tests: un-stuff DATA bytes (without the terminator line)."""
    raise NotImplementedError
