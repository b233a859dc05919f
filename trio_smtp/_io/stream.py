"""A bare stream, before and under a :class:`~trio_smtp._io.transport.Transport`: TLS over it,
whether its peer is loopback, whether the server sent anything not read yet, and the facts
above it ask about it (our address, what TLS agreed on).

Theory of operation: these functions take a ``trio.abc.Stream`` and know nothing of SMTP.
:func:`wrap_tls` runs the handshake (implicit TLS when connecting, RFC 8314 §3; STARTTLS,
RFC 3207 §4.2) under its own deadline; :func:`readable` only looks (poll, never a read), so the
transport stays the one reader of the stream; :func:`peer_is_loopback` decides where
credentials may go without TLS; :func:`local_address` and :func:`tls_facts` answer what the
session (the EHLO domain) and the probe (the server's certificate) need to know, so that no
one above :mod:`trio_smtp._io` walks the stream itself.
"""

from __future__ import annotations

import ipaddress
import math
import select
import socket
import ssl
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import trio

from .._config import Timeouts
from ..protocol._frozen import Frozen, set_field
from .deadlines import deadline, map_errors
from .log import ProtocolLog

__all__ = [
    "RECEIVE_SIZE",
    "TLS_RECORD_WAIT",
    "TlsFacts",
    "local_address",
    "note_tls",
    "or_inf",
    "peer_is_loopback",
    "readable",
    "tls_facts",
    "wrap_tls",
]

#: Bytes asked for per read: replies are small, but a pipelined group's replies come together.
RECEIVE_SIZE = 65536


def peer_is_loopback(stream: trio.abc.Stream) -> bool:
    """True when the stream's peer is 127.0.0.0/8, ::1 or a Unix socket: the only places
    credentials may go without TLS.  Unknown stream types are not loopback."""
    sock = _socket_under(stream)
    if sock is None:
        return False
    if getattr(socket, "AF_UNIX", None) is not None and sock.family == socket.AF_UNIX:
        return True
    try:
        address = ipaddress.ip_address(sock.getpeername()[0])
    except (OSError, ValueError):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _socket_under(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket under any TLS layers, or None for a stream that is not over a socket."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def local_address(stream: trio.abc.Stream) -> str | None:
    """The IP address of our end of the connection (an IPv6 one without brackets), or None
    when the stream is not (TLS over) an IP socket or the socket is closed."""
    sock = _socket_under(stream)
    if sock is None:
        return None
    try:
        name = sock.getsockname()
    except OSError:
        return None
    return str(name[0]) if isinstance(name, tuple) else None  # a Unix socket: a path


class TlsFacts(Frozen):
    """What a TLS connection agreed on and what the server presented (see :func:`tls_facts`).

    A ``Frozen`` value (as the protocol core's), not a dataclass: the client's
    import builds no dataclass of its own (``tests/test_import_cost.py``)."""

    __slots__ = (
        "bits",
        "certificate",
        "certificate_der",
        "cipher",
        "session_reused",
        "version",
    )
    _not_hashed = frozenset({"certificate"})
    #: ``"TLSv1.3"``, ``"TLSv1.2"``...
    version: str | None
    #: The cipher suite's OpenSSL name, and its secret bits.
    cipher: str | None
    bits: int | None
    #: The server's certificate in DER, or None when it presented none.
    certificate_der: bytes | None
    #: The certificate as ``ssl`` decodes it (``SSLSocket.getpeercert()``): empty unless
    #: it was verified (the ``ssl`` module decodes only what it verified).
    certificate: Mapping[str, Any]
    #: True when the handshake resumed an earlier session (RFC 8446 §2.2): no certificate
    #: was sent then; the one above is the resumed session's, verified when it was made.
    session_reused: bool

    def __init__(
        self,
        version: str | None,
        cipher: str | None,
        bits: int | None,
        certificate_der: bytes | None,
        certificate: Mapping[str, Any],
        session_reused: bool,
    ) -> None:
        set_field(self, "version", version)
        set_field(self, "cipher", cipher)
        set_field(self, "bits", bits)
        set_field(self, "certificate_der", certificate_der)
        set_field(self, "certificate", certificate)
        set_field(self, "session_reused", session_reused)


def tls_facts(stream: trio.abc.Stream) -> TlsFacts | None:
    """The facts of the TLS layer of ``stream`` (None when it is not TLS).  Decoding the
    certificate costs: asked for on demand (the probe), never on the send path."""
    if not isinstance(stream, trio.SSLStream):
        return None
    ssl_stream: Any = stream  # SSLStream forwards these to its ssl.SSLObject
    cipher = ssl_stream.cipher()
    der: bytes | None = ssl_stream.getpeercert(binary_form=True)
    return TlsFacts(
        version=ssl_stream.version(),
        cipher=cipher[0] if cipher else None,
        bits=cipher[2] if cipher else None,
        certificate_der=der or None,
        certificate=(ssl_stream.getpeercert() or {}) if der else {},
        session_reused=bool(ssl_stream.session_reused),
    )


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
    # trio.SSLStream and trio.SocketStream are final (subclassing them raises), so their
    # type says it: no ABC instance check (a look is made three times per message).
    while type(stream) is trio.SSLStream:
        incoming = getattr(stream, "_incoming", None)  # trio's private MemoryBIO (see above)
        if stream.pending() or (incoming is not None and incoming.pending):
            return True
        stream = stream.transport_stream
    if type(stream) is not trio.SocketStream:
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
    *,
    phase: Callable[[float | None, str], AbstractContextManager[object]] = deadline,
) -> trio.SSLStream[trio.abc.Stream]:
    """TLS over ``stream``, handshake done (certificate and host name checked by ``context``).

    ``https_compatible=False``: we send close_notify on a polite close.  SMTP frames its own
    data (replies, the terminator), so a ragged EOF cannot truncate anything unnoticed.

    ``session``: a session of an earlier connection to the same server with the same
    ``context``, offered for resumption (RFC 8446 §2.2: no certificate exchange, fewer
    computations; the server may refuse and run a full handshake).  ``trio.SSLStream``
    forwards ``session`` to its ``ssl.SSLObject``, which takes it before the handshake.

    ``phase``: the handshake's deadline, :func:`deadline` or STARTTLS's
    :meth:`Channel.phase <trio_smtp._io.channel.Channel.phase>` (which re-arms the scope
    the session's handshake is under instead of opening one more).
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
            phase(timeouts.tls_handshake, "the TLS handshake"),
        ):
            await tls_stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return tls_stream
