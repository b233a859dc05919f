"""Connecting: a stream to the server (TCP with happy eyeballs, a Unix socket, a proxy or the
user's stream factory), TLS first for implicit TLS, and the
:class:`~trio_smtp._io.transport.Transport` over it.

Theory of operation: one deadline (``Timeouts.connect``) and one error mapping cover opening
the stream; the implicit TLS handshake (RFC 8314 §3) has its own
(:func:`~trio_smtp._io.stream.wrap_tls`).  A host name goes through happy eyeballs
(RFC 8305, ``trio.open_tcp_stream``); an address literal is one ``connect``: with a single
address there is nothing to race.
Nothing is read or written here once the transport exists: it is the only reader and writer.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl

import trio

from .._config import Security, Timeouts
from ..protocol import ClientConnection
from .deadlines import deadline, map_errors
from .log import ProtocolLog
from .proxy import Proxy
from .stream import note_tls, wrap_tls
from .transport import StreamFactory, Transport

__all__ = ["open_tcp", "open_transport"]


async def open_transport(
    host: str,
    port: int,
    *,
    security: Security,
    context: ssl.SSLContext | None,
    timeouts: Timeouts,
    stream_factory: StreamFactory | None = None,
    unix_socket: str | None = None,
    proxy: Proxy | None = None,
    source_address: str | None = None,
    tls_session: ssl.SSLSession | None = None,
) -> Transport:
    """Connect (happy eyeballs, RFC 8305, via trio.open_tcp_stream; or to ``unix_socket``;
    or through ``stream_factory`` or ``proxy``; TCP from ``source_address`` if given), TLS
    first if implicit (resuming ``tls_session``)."""
    peer = unix_socket if unix_socket is not None else f"{host}:{port}"
    what = "connecting" if stream_factory is not None else f"the connection to {peer}"
    if proxy is not None:
        what += f" through the proxy {proxy.display}"
    # The peer is named only when we dial it: a stream factory's errors are its own, and a
    # proxy names itself in the errors it raises.
    connect_to = None if stream_factory is not None or proxy is not None else peer
    if source_address is not None:
        connect_to = f"{peer} from {source_address}"
    with map_errors(what, connect_to=connect_to), deadline(timeouts.connect, what):
        if stream_factory is not None:
            stream = await stream_factory()
        elif unix_socket is not None:
            stream = await trio.open_unix_socket(unix_socket)
        elif proxy is not None:
            stream = await proxy.open_stream(host, port)
        else:
            stream = await open_tcp(host, port, source_address)
    log = ProtocolLog(peer)
    log.note("connected" if proxy is None else f"connected through the proxy {proxy.display}")
    if security is Security.IMPLICIT_TLS:
        assert context is not None
        stream = await wrap_tls(stream, context, host, timeouts, tls_session)
        note_tls(log, stream)
    transport = Transport(stream, ClientConnection(), host=host, timeouts=timeouts, log=log)
    if proxy is not None:
        # The socket's peer is the proxy: a local proxy says nothing about the SMTP server.
        transport.loopback = False
    return transport


async def open_tcp(host: str, port: int, source: str | None = None) -> trio.SocketStream:
    """A TCP stream to ``host:port``, TCP_NODELAY set (by ``trio.SocketStream``).

    A name is resolved and its addresses raced (happy eyeballs, RFC 8305, through
    ``trio.open_tcp_stream``).  An address literal has one address and nothing to race: it
    is one non-blocking ``connect``, without the resolver call, the nursery and the task
    trio's happy eyeballs start for it (a third of the connect's CPU: issue 12's ``tls``
    scenario, a session per connection).  Errors are the ``OSError`` of that connect, which
    :func:`~trio_smtp._io.deadlines.connect_error` words as it words trio's.

    ``source``: the local address to connect from, bound as trio binds it (port 0, with
    ``IP_BIND_ADDRESS_NO_PORT`` where Linux has it, so that the port is chosen at connect
    time and many connections from one address do not run out of ports)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return await trio.open_tcp_stream(host, port, local_address=source)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        if source is not None:
            no_port = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", None)  # Linux only
            if no_port is not None:
                with contextlib.suppress(OSError):  # as trio: an old kernel lacks it
                    sock.setsockopt(socket.IPPROTO_IP, no_port, 1)
            await sock.bind((source, 0))
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)
