"""A bare stream, before and under a :class:`~trio_smtp._io.transport.Transport`: TLS over it,
whether its peer is loopback, whether the server sent anything not read yet.

Theory of operation: these functions take a ``trio.abc.Stream`` and know nothing of SMTP.
:func:`wrap_tls` runs the handshake (implicit TLS when connecting, RFC 8314 §3; STARTTLS,
RFC 3207 §4.2) under its own deadline; :func:`readable` only looks (poll, never a read), so the
transport stays the one reader of the stream; :func:`peer_is_loopback` decides where
credentials may go without TLS.
"""

from __future__ import annotations

import ipaddress
import math
import select
import socket
import ssl

import trio

from .._config import Timeouts
from .deadlines import deadline, map_errors
from .log import ProtocolLog

__all__ = [
    "RECEIVE_SIZE",
    "TLS_RECORD_WAIT",
    "note_tls",
    "or_inf",
    "peer_is_loopback",
    "readable",
    "wrap_tls",
]

#: Bytes asked for per read: replies are small, but a pipelined group's replies come together.
RECEIVE_SIZE = 65536


def peer_is_loopback(stream: trio.abc.Stream) -> bool:
    """True when the stream's peer is 127.0.0.0/8, ::1 or a Unix socket: the only places
    credentials may go without TLS.  Unknown stream types are not loopback."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return False
    sock = stream.socket
    if getattr(socket, "AF_UNIX", None) is not None and sock.family == socket.AF_UNIX:
        return True
    try:
        address = ipaddress.ip_address(sock.getpeername()[0])
    except (OSError, ValueError):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


#: How long a readable TLS socket is read before it is taken as carrying no application
#: data (a session ticket): what a look before a write may cost at most.
TLS_RECORD_WAIT = 0.005


def readable(stream: trio.abc.Stream) -> bool:
    """Whether the server sent something (or closed) that is not read yet, without
    blocking: TLS records or plaintext already in a TLS stream's buffers, or a readable
    socket.  False for streams that are not (TLS over) a socket: they cannot be looked at.

    The one private read of a library object in trio_smtp, and why no public way serves:
    ``SSLStream.receive_some`` moves all the socket has into its incoming ``MemoryBIO`` but
    returns the text of one TLS record; records behind it stay there, encrypted, where
    neither ``pending()`` (decrypted bytes only) nor the socket (already read) shows them.
    trio does not expose that BIO, and reaching it through the ``SSLContext`` would change
    the caller's context; a receive instead of a look would take the bytes from the reader
    (during DATA another task is receiving).  If trio renames ``_incoming`` this look only
    goes blind to such records (the next read still gets them);
    ``tests/test_transport.py::test_tls_records_already_taken_from_the_transport_are_seen``
    fails loudly then."""
    while isinstance(stream, trio.SSLStream):
        incoming = getattr(stream, "_incoming", None)  # trio's private MemoryBIO (see above)
        if stream.pending() or (incoming is not None and incoming.pending):
            return True
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return False
    fd = stream.socket.fileno()
    if fd < 0:
        return True  # closed under us: the next read says so
    if _poll is None:  # Windows: select() works on sockets
        return bool(select.select([fd], [], [], 0)[0])
    poller = _poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


_poll = getattr(select, "poll", None)


def note_tls(log: ProtocolLog, stream: trio.abc.Stream) -> None:
    """Say in the protocol log that TLS is up: version, cipher, and whether resumed."""
    if isinstance(stream, trio.SSLStream):
        cipher = stream.cipher()
        resumed = " (session resumed)" if stream.session_reused else ""
        text = f"TLS established: {stream.version()} {cipher[0] if cipher else ''}".rstrip()
        log.note(text + resumed)


def or_inf(seconds: float | None) -> float:
    """A timeout setting as seconds for Trio: None (no limit) is infinity."""
    return math.inf if seconds is None else seconds


async def wrap_tls(
    stream: trio.abc.Stream,
    context: ssl.SSLContext,
    host: str,
    timeouts: Timeouts,
    session: ssl.SSLSession | None = None,
) -> trio.SSLStream[trio.abc.Stream]:
    """TLS over ``stream``, handshake done (certificate and host name checked by ``context``).

    ``https_compatible=False``: we send close_notify on a polite close.  SMTP frames its own
    data (replies, the terminator), so a ragged EOF cannot truncate anything unnoticed.

    ``session``: a session of an earlier connection to the same server with the same
    ``context``, offered for resumption (RFC 8446 §2.2: no certificate exchange, fewer
    computations; the server may refuse and run a full handshake).  ``trio.SSLStream``
    forwards ``session`` to its ``ssl.SSLObject``, which takes it before the handshake.
    """
    tls_stream = trio.SSLStream(
        stream, context, server_hostname=host or None, https_compatible=False
    )
    if session is not None:
        try:
            tls_stream.session = session
        except (ValueError, ssl.SSLError):  # not from this context: a full handshake
            pass
    try:
        with (
            map_errors("the TLS handshake", tls=True),
            deadline(timeouts.tls_handshake, "the TLS handshake"),
        ):
            await tls_stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return tls_stream
