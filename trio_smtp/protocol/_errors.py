"""Errors of the sans-IO core, split by blame (cf. h11/_util.py).

``LocalProtocolError``: the caller asked the machine for something the protocol does not
allow (a command out of order, an argument with CR/LF, an over-long line).  Nothing was
produced for the wire.

``RemoteProtocolError``: the peer's bytes broke the protocol (a malformed or over-long reply,
bytes injected after STARTTLS).  The connection is in ERROR and must be closed.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of the protocol core's errors."""


class LocalProtocolError(ProtocolError, ValueError):
    """The caller misused the protocol; nothing was written for the wire."""


class RemoteProtocolError(ProtocolError):
    """The server violated the protocol; the connection must not be reused."""
