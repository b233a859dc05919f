"""Messages used by the benchmark, shaped like the ones Postfix's smtp-source sends.

smtp-source's ``-l LENGTH`` payload is lines of 78 characters (a rolling digit, then "X"s)
ended by CRLF, under a From/To/Date/Message-Id header block. The Python clients send the same
shape and size so that every client moves the same number of bytes per message.
"""

from __future__ import annotations

import email.utils
from email.message import EmailMessage
from typing import BinaryIO

SENDER = "bench-sender@example.org"
RECIPIENT = "bench-rcpt@example.net"
MIB = 1024 * 1024
_LINE = 78  # characters per body line before CRLF, as smtp-source writes them
_BLOCK_LINES = 1024  # lines per block when generating large bodies


def _line(i: int) -> bytes:
    return str(i % 10).encode() + b"X" * (_LINE - 1) + b"\r\n"


def body(size: int) -> bytes:
    """A body of exactly ``size`` bytes of CRLF-terminated lines (the last may be shorter)."""
    block = b"".join(_line(i) for i in range(10))  # the digits repeat every 10 lines
    out = block * (size // len(block) + 1)
    out = out[:size]
    if size >= 2:
        out = out[:-2] + b"\r\n"  # end on a line boundary, as a real message does
    return out


def headers(i: int, subject: str = "bench") -> bytes:
    """A header block for message number ``i``, ended by the empty line."""
    return (
        f"From: <{SENDER}>\r\n"
        f"To: <{RECIPIENT}>\r\n"
        f"Date: {email.utils.formatdate(0.0, usegmt=True)}\r\n"
        f"Message-Id: <{i}.bench@example.org>\r\n"
        f"Subject: {subject} {i}\r\n"
        "\r\n"
    ).encode("ascii")


def raw_messages(count: int, size: int) -> list[bytes]:
    """``count`` distinct pre-serialised messages, each with a ``size``-byte body."""
    b = body(size)
    return [headers(i) + b for i in range(count)]


def email_messages(count: int, size: int) -> list[EmailMessage]:
    """``count`` distinct :class:`EmailMessage` objects with a text body of about ``size`` bytes.

    Built with the SMTP policy's line endings left to the serialiser; each client serialises
    them itself, which is what scenario 3 measures.
    """
    text = body(size).decode("ascii").replace("\r\n", "\n")
    out = []
    for i in range(count):
        msg = EmailMessage()
        msg["From"] = SENDER
        msg["To"] = RECIPIENT
        msg["Subject"] = f"bench {i}"
        msg["Date"] = email.utils.formatdate(0.0, usegmt=True)
        msg["Message-ID"] = f"<{i}.bench@example.org>"
        msg.set_content(text)
        out.append(msg)
    return out


def write_message_file(f: BinaryIO, size: int) -> int:
    """Write one message with a body of about ``size`` bytes to ``f``; return bytes written."""
    written = f.write(headers(0, "big"))
    block = b"".join(_line(i) for i in range(_BLOCK_LINES))
    while written + len(block) <= size:
        written += f.write(block)
    written += f.write(body(max(size - written, 2)))
    return written
