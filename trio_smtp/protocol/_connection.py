"""ClientConnection: the sans-IO SMTP client.

Theory of operation (cf. h11/_connection.py, httpcore's ``_receive_event``): the driver calls
:meth:`ClientConnection.send` with a command and writes the bytes it gets back; it feeds what it
reads to :meth:`~ClientConnection.receive_data` and calls :meth:`~ClientConnection.next_event`
until it returns :data:`NEED_DATA`.  Each :class:`Reply` comes back with ``reply.command`` set
to the command it answers, in order (a FIFO of commands awaiting replies, RFC 2920).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ._commands import Command
from ._extensions import Extensions
from ._replies import Reply, ReplyLimits
from ._state import State

__all__ = ["NEED_DATA", "ClientConnection", "ConnectionClosed", "NeedData"]


class NeedData:
    """Sentinel type: no complete event yet; read more and call receive_data."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The server closed the connection (``receive_data(b"")`` and nothing left to parse)."""


class ClientConnection:
    """The client side of one SMTP session, with no I/O."""

    def __init__(self, *, limits: ReplyLimits | None = None) -> None:
        raise NotImplementedError

    @property
    def state(self) -> State:
        raise NotImplementedError

    @property
    def extensions(self) -> Extensions:
        """What the last EHLO advertised; empty before EHLO, after HELO and after STARTTLS."""
        raise NotImplementedError

    @property
    def pending(self) -> int:
        """Commands sent whose replies have not been returned yet."""
        raise NotImplementedError

    def send(self, command: Command) -> bytes:
        """Validate ``command`` against the state and its own rules; return its bytes.

        Raises LocalProtocolError (nothing produced) when the state does not allow it, when
        pipelining would break RFC 2920 (a command after one that ends a group, or any
        command while replies are outstanding and PIPELINING was not advertised), or when an
        argument is invalid.  Non-ASCII arguments are allowed only after a MAIL with
        ``smtputf8=True`` in the current transaction.
        """
        raise NotImplementedError

    def send_data(self, chunk: bytes | memoryview) -> bytes:
        """In DATA (after 354): encode a chunk of the message (see DataEncoder)."""
        raise NotImplementedError

    def end_data(self) -> bytes:
        """In DATA: the rest of the encoded message and the terminator; awaits its reply."""
        raise NotImplementedError

    def send_failed(self) -> None:
        """The driver could not write (or was cancelled writing) the last bytes: ERROR."""
        raise NotImplementedError

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the server; ``b""`` means EOF."""
        raise NotImplementedError

    def next_event(self) -> Reply | NeedData | ConnectionClosed:
        """The next reply (matched to its command), NEED_DATA, or ConnectionClosed.

        Raises RemoteProtocolError (and enters ERROR) on a malformed reply, a reply nobody
        asked for, or bytes already received after the 220 answering STARTTLS.
        """
        raise NotImplementedError

    def start_tls(self) -> None:
        """After the driver has wrapped the stream in TLS: back to GREETED, extensions
        forgotten, EHLO required again (RFC 3207 §4.2)."""
        raise NotImplementedError
