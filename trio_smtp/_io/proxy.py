"""Connecting through a SOCKS or HTTP CONNECT proxy (``SmtpClient(proxy=...)``).

Theory of operation: a proxy only opens the TCP connection.  :meth:`Proxy.open_stream`
returns a plain ``trio.SocketStream`` that is already a tunnel to the SMTP server; from
there everything is as for a direct connection, so TLS (implicit, or after STARTTLS) runs
end to end through the tunnel and checks the SMTP server's name, never the proxy's
(:func:`~trio_smtp._io.stream.wrap_tls` is given the SMTP host).  The proxy sees only TLS
records.

Two libraries were weighed.  ``socksio`` is sans-IO but has no HTTP CONNECT; ``python-socks``
has SOCKS4/4a/5 with authentication and a Trio backend, reads every SOCKS reply with exact
lengths, and is typed: SOCKS goes through it (the ``proxy`` extra).  Its HTTP CONNECT
reads one chunk and drops whatever follows the status line -- harmless for HTTP, where the
client speaks first, but SMTP's server speaks first (RFC 5321 §3.1), so the greeting may
arrive in that same chunk and be lost, and a response head split across reads would be
taken for SMTP.  HTTP CONNECT (RFC 9110 §9.3.6) is therefore done here, in a few lines, and
reads exactly the response head: it peeks at the socket and consumes only up to the blank
line, so the first byte left in the socket is the server's first byte.

Credentials never leave this module except towards the proxy: :attr:`Proxy.display` (used
in every error message and in the protocol log) and ``repr()`` show scheme, host and port
only.  A proxied connection never counts as loopback for sending credentials in clear: the
proxy may be local, the SMTP server is not (see :func:`~trio_smtp._io.connect.open_transport`).
"""

from __future__ import annotations

import base64
import math
import socket
from typing import Any

import trio

from .._errors import SmtpConnectError
from .url import decode_component, host_and_port

__all__ = ["Proxy", "parse_proxy"]

#: URL scheme -> (python-socks proxy type name, the proxy resolves the SMTP host name).
_SCHEMES = {
    "socks4": ("SOCKS4", False),
    "socks4a": ("SOCKS4", True),
    "socks5": ("SOCKS5", False),
    "socks5h": ("SOCKS5", True),
    "http": ("HTTP", True),
}
#: The IANA port of SOCKS; an HTTP proxy has no standard port, so it must be given.
_SOCKS_PORT = 1080
#: An HTTP CONNECT response head larger than this is refused (a proxy says little).
_MAX_HEAD = 16 * 1024

_EXTRA_HINT = "pip install 'trio-smtp[proxy]'"


class Proxy:
    """A parsed proxy URL; see :func:`parse_proxy`.  Holds the credentials but never shows
    them: ``repr()`` and :attr:`display` are ``scheme://host:port``."""

    __slots__ = ("_password", "_username", "host", "port", "remote_dns", "scheme")

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        #: ``socks4``, ``socks4a``, ``socks5``, ``socks5h`` or ``http``.
        self.scheme = scheme
        self.host = host
        self.port = port
        #: True when the proxy, not this machine, resolves the SMTP server's name.
        self.remote_dns = _SCHEMES[scheme][1]
        self._username = username
        self._password = password

    @property
    def display(self) -> str:
        """``scheme://host:port``: how errors and the log name the proxy (no credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<Proxy {self.display}>"

    async def open_stream(self, host: str, port: int) -> trio.SocketStream:
        """A TCP tunnel through the proxy to ``host:port``, ready for SMTP.

        The proxy refusing, failing authentication, breaking its protocol or being
        unreachable is :class:`~trio_smtp.SmtpConnectError` naming the proxy.  No deadline
        of its own: the caller's connect deadline covers the whole exchange."""
        host = ascii_host(host)  # the proxy gets the name as DNS carries it
        if self.scheme == "http":
            return await self._open_http(host, port)
        return await self._open_socks(host, port)

    # -- SOCKS, through python-socks --------------------------------------------------------

    async def _open_socks(self, host: str, port: int) -> trio.SocketStream:
        python_socks, trio_backend = _import_python_socks()
        kind, remote_dns = _SCHEMES[self.scheme]
        proxy = trio_backend.Proxy(
            getattr(python_socks.ProxyType, kind),
            self.host,
            self.port,
            username=self._username,
            password=self._password,
            rdns=remote_dns,
        )
        try:
            # math.inf: the client's connect deadline (Timeouts.connect) is the only one.
            sock = await proxy.connect(host, port, timeout=math.inf)
        except python_socks.ProxyConnectionError as exc:
            raise self._unreachable(exc.strerror or str(exc)) from exc
        except python_socks.ProxyError as exc:
            raise self._refused(host, port, str(exc)) from exc
        except OSError as exc:  # resolving the SMTP host locally (socks4, socks5)
            raise SmtpConnectError(
                f"cannot resolve {host} to connect through the proxy {self.display}: {exc}"
            ) from exc
        return trio.SocketStream(sock)

    # -- HTTP CONNECT, here ------------------------------------------------------------------

    async def _open_http(self, host: str, port: int) -> trio.SocketStream:
        try:
            stream = await trio.open_tcp_stream(self.host, self.port)
        except OSError as exc:
            raise self._unreachable(str(exc)) from exc
        try:
            await stream.send_all(self._connect_request(host, port))
            head = await _read_head(stream.socket)
            status, reason = _status(head)
        except (OSError, trio.BrokenResourceError, _BadAnswer) as exc:
            await trio.aclose_forcefully(stream)
            raise SmtpConnectError(f"the proxy {self.display} failed: {exc}") from exc
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        if not 200 <= status < 300:  # RFC 9110 §9.3.6: any 2xx means the tunnel is open
            await trio.aclose_forcefully(stream)
            # 407, RFC 9110 §15.5.8; tinyproxy answers wrong credentials with 401.
            what = "authentication failed: " if status in (401, 407) else ""
            raise self._refused(host, port, f"{what}{status} {reason}".strip())
        return stream

    def _connect_request(self, host: str, port: int) -> bytes:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if self._username is not None:
            # RFC 7617: user-id ":" password, UTF-8, base64.
            secret = f"{self._username}:{self._password or ''}".encode()
            lines.append(f"Proxy-Authorization: Basic {base64.b64encode(secret).decode()}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    # -- errors ------------------------------------------------------------------------------

    def _unreachable(self, reason: str) -> SmtpConnectError:
        return SmtpConnectError(f"cannot reach the proxy {self.display}: {self._scrub(reason)}")

    def _refused(self, host: str, port: int, reason: str) -> SmtpConnectError:
        return SmtpConnectError(
            f"the proxy {self.display} did not connect to {host}:{port}: {self._scrub(reason)}"
        )

    def _scrub(self, text: str) -> str:
        # The libraries' messages hold no password today; make sure they never do.
        return text.replace(self._password, "***") if self._password else text


def parse_proxy(url: str) -> Proxy:
    """``scheme://[user[:password]@]host[:port]`` -> :class:`Proxy`.

    Schemes: ``socks5`` (this machine resolves the SMTP host), ``socks5h`` (the proxy
    does), ``socks4``, ``socks4a``, ``http`` (HTTP CONNECT).  User and password are
    percent-decoded.  The port defaults to 1080 for SOCKS and is required for HTTP.

    Raises ``ValueError`` for anything malformed (never quoting the password), and
    ``ImportError`` naming the ``proxy`` extra for a SOCKS proxy without python-socks.
    """
    if not isinstance(url, str):
        raise TypeError(f"proxy must be a URL string, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _SCHEMES:
        raise ValueError(f"proxy must be a {', '.join(s + '://' for s in _SCHEMES)} URL")
    userinfo, at, hostport = rest.rpartition("@")
    hostport = hostport.removesuffix("/")
    if any(c in hostport for c in "/?#"):
        raise ValueError(f"a proxy URL has no path, query or fragment ({scheme}://host:port)")
    host, port = host_and_port(hostport)
    if port is None:
        if scheme == "http":
            raise ValueError("an http:// proxy URL needs a port (http://host:port)")
        port = _SOCKS_PORT
    username, password = _credentials(userinfo if at else None, scheme)
    if scheme != "http":
        _import_python_socks()  # fail at construction, not at the first send
    return Proxy(scheme, host, port, username, password)


def _credentials(userinfo: str | None, scheme: str) -> tuple[str | None, str | None]:
    if userinfo is None:
        return None, None
    user, colon, password = userinfo.partition(":")
    username = decode_component(user, "proxy user name")
    if not username:
        raise ValueError("the proxy URL has an empty user name before '@'")
    if scheme == "http" and ":" in username:
        raise ValueError("an HTTP proxy user name cannot contain ':' (RFC 7617)")
    if scheme.startswith("socks4") and colon:
        raise ValueError("SOCKS4 has no password: give socks4://user@host")
    if scheme.startswith("socks5") and not colon:
        raise ValueError("a SOCKS5 proxy user needs a password: socks5://user:password@host")
    secret = decode_component(password, "proxy password") if colon else None
    for value in (username, secret or ""):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("the proxy credentials contain control characters")
    return username, secret


def check_destination(host: str) -> None:
    """The SMTP host goes into the proxy's request: refuse white space and controls (an
    HTTP CONNECT request line could otherwise be split) and names IDNA cannot encode."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in host):
        raise ValueError("the host name contains white space or control characters")
    try:
        ascii_host(host)
    except UnicodeError:
        raise ValueError(f"the host name {host!r} cannot be encoded for DNS (IDNA)") from None


def ascii_host(host: str) -> str:
    """``host`` as an ASCII name (IDNA, RFC 3490) for the proxy's request."""
    return host if host.isascii() else host.encode("idna").decode("ascii")


def _import_python_socks() -> tuple[Any, Any]:
    try:
        import python_socks
        import python_socks.async_.trio as trio_backend
    except ImportError as exc:
        raise ImportError(
            f"a SOCKS proxy needs the python-socks package: {_EXTRA_HINT}", name=exc.name
        ) from exc
    return python_socks, trio_backend


class _BadAnswer(Exception):
    """The HTTP proxy's answer cannot be read (reported naming the proxy)."""


async def _read_head(sock: trio.socket.SocketType) -> bytes:
    """The HTTP response head, up to and including its blank line, and not one byte more.

    MSG_PEEK looks at what has arrived without taking it; only the octets of the head are
    then received, so the SMTP greeting that may follow in the same segment stays in the
    socket for the SMTP reader."""
    head = b""
    while True:
        peeked = await sock.recv(_MAX_HEAD, socket.MSG_PEEK)
        if not peeked:
            raise _BadAnswer("it closed the connection before it answered")
        tail = head[-3:]
        end = (tail + peeked).find(b"\r\n\r\n")
        take = len(peeked) if end < 0 else end + 4 - len(tail)
        head += await sock.recv(take)
        if end >= 0 and head.endswith(b"\r\n\r\n"):
            return head
        if len(head) > _MAX_HEAD:
            raise _BadAnswer(f"its response head is larger than {_MAX_HEAD} octets")


def _status(head: bytes) -> tuple[int, str]:
    """RFC 9112 §4: ``HTTP/1.x SP 3DIGIT SP reason``."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
        raise _BadAnswer(f"its answer is not HTTP: {line[:80]!r}")
    return int(code), reason.strip()
