"""Opening an SMTP session: greeting, EHLO/HELO, STARTTLS, AUTH.

Theory of operation: :func:`open_session` connects (see :mod:`trio_smtp._io.connect`) and runs
the handshake in order, refusing to go on whenever security would be weakened: STARTTLS
required but not advertised, refused, or not cleanly followed by the handshake is an
:class:`~trio_smtp.SmtpTlsError` before any credential or envelope is sent (RFC 3207 §4, §6);
credentials never go over a plaintext link to a non-loopback peer.  On any failure the
connection is closed; the caller only ever gets a session ready for MAIL.

Deadlines: the greeting, each command and the TLS handshake keep their own budgets
(:class:`~trio_smtp.Timeouts`), under one :class:`~trio_smtp._io.deadlines.Phases` scope
armed again at each step.  The local waits between steps -- the host name lookup for EHLO,
an OAuth 2.0 token -- suspend it and have limits of their own.
"""

from __future__ import annotations

import ssl

import trio

from .. import sasl
from .._config import Security, Timeouts
from .._credentials import Credentials, OAuth2
from .._errors import SmtpAuthenticationError, SmtpConnectError, SmtpTlsError
from .._io.connect import open_transport
from .._io.hostname import address_literal, local_fqdn
from .._io.proxy import Proxy
from .._io.transport import StreamFactory, Transport, deadline
from ..protocol import AuthResponse, Ehlo, Helo, Reply, StartTls
from ..protocol._frozen import Frozen, set_field

__all__ = ["SessionConfig", "TlsSessionCache", "open_session"]


#: A resolver that hangs must not stall the session: after this, use an address literal.
_FQDN_LOOKUP_LIMIT = 5.0


class TlsSessionCache:
    """The TLS session of the last connection to the server, for the next one to resume.

    One per client or pool (every connection of one goes to the same server with the same
    SSL context, which a session must come from).  Under TLS 1.3 the server's tickets come
    after the handshake, so the session is read from the connection only when the next
    connection asks for it (:attr:`session`), never before a reply was read over TLS.  Read
    lazily also because reading it costs: ``SSLObject.session`` copies the session through
    its DER form, peer certificate included (~0.13 ms with OpenSSL 3, as much as a quarter
    of a resumed handshake), which a client that connects once would pay for nothing.
    """

    __slots__ = ("_last", "_session")

    def __init__(self) -> None:
        self._session: ssl.SSLSession | None = None
        #: The last connection over TLS, whose session was not read yet.
        self._last: Transport | None = None

    @property
    def session(self) -> ssl.SSLSession | None:
        """The session to offer on the next connection (None: a full handshake)."""
        last, self._last = self._last, None
        if last is not None:
            session = last.tls_session()
            if session is not None:
                self._session = session
        return self._session

    def save(self, transport: Transport) -> None:
        """``transport`` is ready for MAIL: the next connection resumes its session (read
        then, see above); a connection without TLS leaves the last session in place."""
        if transport.tls:
            self._last = transport


class SessionConfig(Frozen):
    """Everything :func:`open_session` needs; built once by the client."""

    __slots__ = (
        "credentials",
        "host",
        "local_hostname",
        "port",
        "proxy",
        "security",
        "source_address",
        "ssl_context",
        "stream_factory",
        "timeouts",
        "tls_sessions",
        "unix_socket",
    )
    #: Not compared (nor hashed, nor shown): a cache, not part of the configuration.
    _not_compared = frozenset({"tls_sessions"})
    host: str
    port: int
    security: Security
    ssl_context: ssl.SSLContext | None
    timeouts: Timeouts
    credentials: Credentials | None
    local_hostname: str | None
    stream_factory: StreamFactory | None
    #: Connect to this Unix socket path instead of TCP to ``host:port``.
    unix_socket: str | None
    #: Connect through this SOCKS or HTTP CONNECT proxy (see :mod:`trio_smtp._io.proxy`).
    proxy: Proxy | None
    #: The local IP address TCP connections leave from (None: the system's choice).
    source_address: str | None
    #: The session the next TLS handshake offers to resume (shared by the client's
    #: connections; the same object in every copy of this config: ``_replace`` passes it on).
    tls_sessions: TlsSessionCache

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        ssl_context: ssl.SSLContext | None,
        timeouts: Timeouts,
        credentials: Credentials | None = None,
        local_hostname: str | None = None,
        stream_factory: StreamFactory | None = None,
        unix_socket: str | None = None,
        proxy: Proxy | None = None,
        tls_sessions: TlsSessionCache | None = None,
        source_address: str | None = None,
    ) -> None:
        set_field(self, "host", host)
        set_field(self, "port", port)
        set_field(self, "security", security)
        set_field(self, "ssl_context", ssl_context)
        set_field(self, "timeouts", timeouts)
        set_field(self, "credentials", credentials)
        set_field(self, "local_hostname", local_hostname)
        set_field(self, "stream_factory", stream_factory)
        set_field(self, "unix_socket", unix_socket)
        set_field(self, "proxy", proxy)
        set_field(self, "source_address", source_address)
        set_field(self, "tls_sessions", TlsSessionCache() if tls_sessions is None else tls_sessions)


async def open_session(config: SessionConfig) -> Transport:
    """A connected, greeted, (TLS-protected,) authenticated session, ready for MAIL."""
    transport = await open_transport(
        config.host,
        config.port,
        security=config.security,
        context=config.ssl_context,
        timeouts=config.timeouts,
        stream_factory=config.stream_factory,
        unix_socket=config.unix_socket,
        proxy=config.proxy,
        source_address=config.source_address,
        tls_session=config.tls_sessions.session,
    )
    try:
        # One deadline scope for the whole handshake, armed again at each step with the
        # step's own budget (as a transaction's, see Phases): a scope per step cost
        # ~0.1 ms per session (bench/tls_cpu.py).
        with transport.phases():
            await _handshake(transport, config)
    except BaseException:
        await transport.aclose()
        raise
    config.tls_sessions.save(transport)
    return transport


async def _handshake(transport: Transport, config: SessionConfig) -> None:
    if config.credentials is not None and config.security is Security.NONE:
        _check_credentials_allowed(transport)  # before EHLO: nothing sent yet
    greeting = await transport.read_reply("the greeting", config.timeouts.greeting)
    if greeting.code != 220:
        # RFC 5321 §3.1: 554 (or 421) instead of 220 means no service here.
        raise SmtpConnectError("the server refused the session", reply=greeting)
    domain = config.local_hostname
    if not domain:
        with transport.phases_suspended():  # a local wait with its own limit, not a step
            domain = await ehlo_domain(transport)
    await ehlo_or_helo(transport, domain)
    if config.security in (Security.STARTTLS, Security.STARTTLS_OPPORTUNISTIC):
        await negotiate_starttls(transport, config, domain)
    if config.credentials is not None:
        _check_credentials_allowed(transport)
        await authenticate(transport, config.credentials, host=config.host, port=config.port)


async def ehlo_domain(transport: Transport) -> str:
    """This machine's FQDN (looked up once, in a thread), or the address literal of our end
    of the connection when the lookup is slow or gives nothing usable (RFC 5321 §4.1.4)."""
    local = transport.local_address()
    # A local wait before EHLO: never longer than EHLO's own budget (Timeouts.command).
    limit = _FQDN_LOOKUP_LIMIT
    if transport.timeouts.command is not None:
        limit = min(limit, transport.timeouts.command)
    with trio.move_on_after(limit):
        return await local_fqdn(local)
    return address_literal(local or "127.0.0.1")


async def ehlo_or_helo(transport: Transport, domain: str) -> None:
    """EHLO, falling back to HELO when EHLO is not recognised (RFC 5321 §4.1.4)."""
    limit = transport.timeouts.command
    reply = await transport.command(Ehlo(domain), "EHLO", limit)
    if reply.code == 250:
        return
    if reply.code == 421 or not reply.is_permanent:
        raise SmtpConnectError("the server refused EHLO", reply=reply)
    reply = await transport.command(Helo(domain), "HELO", limit)
    if reply.code != 250:
        raise SmtpConnectError("the server refused EHLO and HELO", reply=reply)


async def negotiate_starttls(transport: Transport, config: SessionConfig, domain: str) -> None:
    """RFC 3207.  Required: not advertised, any reply but 220, bytes after the 220 or a failed
    handshake are SmtpTlsError.  Opportunistic: used when advertised; a refusal leaves the
    session in plaintext."""
    required = config.security is Security.STARTTLS
    if not transport.extensions.starttls:
        if required:
            raise SmtpTlsError("STARTTLS is required but the server did not advertise it")
        return
    reply = await transport.command(StartTls(), "STARTTLS", transport.timeouts.command, tls=True)
    if reply.code != 220:
        if required or reply.code == 421:
            raise SmtpTlsError("the server refused STARTTLS", reply=reply)
        return
    assert config.ssl_context is not None
    await transport.start_tls(config.ssl_context, config.tls_sessions.session)
    # RFC 3207 §4.2: forget everything learned before TLS and say EHLO again.
    reply = await transport.command(Ehlo(domain), "EHLO after STARTTLS", transport.timeouts.command)
    if reply.code != 250:
        raise SmtpConnectError("the server refused EHLO after STARTTLS", reply=reply)


def _check_credentials_allowed(transport: Transport) -> None:
    if not transport.tls and not transport.loopback:
        raise SmtpAuthenticationError(
            "refusing to send credentials without TLS to a non-loopback server"
        )


async def _mechanism(
    transport: Transport, credentials: Credentials, host: str, port: int
) -> sasl.Mechanism:
    offered = transport.extensions.auth_mechanisms
    if isinstance(credentials, sasl.Mechanism):
        return credentials  # forced; auth_command() starts a fresh exchange
    if isinstance(credentials, OAuth2):
        token = await _oauth_token(transport, credentials)
        chosen = sasl.choose_oauth_mechanism(
            offered, credentials.username, token, host or None, port
        )
        return _offered_or_fail(chosen, offered, "OAuth 2.0 (OAUTHBEARER, XOAUTH2)")
    if isinstance(credentials, tuple):
        chosen = sasl.choose_mechanism(offered, credentials[0], credentials[1])
        return _offered_or_fail(chosen, offered, "password")
    return credentials()


async def _oauth_token(transport: Transport, credentials: OAuth2) -> str:
    # A local wait with a limit of its own (Timeouts.command), not a step of the session.
    with transport.phases_suspended():
        try:
            with deadline(transport.timeouts.command, "the OAuth2 token"):
                token = await credentials.get_token()
        except Exception as exc:
            raise SmtpAuthenticationError(f"could not get an OAuth2 token: {exc!r}") from exc
    return token


def _offered_or_fail(
    mechanism: sasl.Mechanism | None, offered: frozenset[str], kind: str
) -> sasl.Mechanism:
    if mechanism is None:
        raise SmtpAuthenticationError(
            f"no supported {kind} authentication mechanism offered "
            f"(server offers: {', '.join(sorted(offered)) or 'none'})"
        )
    return mechanism


async def authenticate(
    transport: Transport, credentials: Credentials, *, host: str = "", port: int = 0
) -> None:
    """AUTH (RFC 4954) with the strongest offered mechanism, unless one is forced.

    Password credentials: SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN (the first
    the server offers; see :data:`trio_smtp.sasl.PREFERENCE`).  :class:`OAuth2`:
    OAUTHBEARER, then XOAUTH2.  The mechanism builds the AUTH line (an initial response too
    long for it waits for the first 334) and caps the rounds; a malformed challenge or one
    round too many cancels the exchange with "*" (RFC 4954 §4).  Anything but 235 is
    SmtpAuthenticationError carrying the server's reply.
    """
    if "AUTH" not in transport.extensions:
        raise SmtpAuthenticationError("credentials given but the server does not offer AUTH")
    limit = transport.timeouts.command
    mechanism = await _mechanism(transport, credentials, host, port)
    reply = await transport.command(mechanism.auth_command(), "AUTH", limit)
    while reply.code == 334:
        try:
            response = mechanism.respond(sasl.decode_challenge(reply.text))
        except sasl.SaslError as exc:
            reply = await transport.command(AuthResponse(cancel=True), "AUTH cancel", limit)
            raise SmtpAuthenticationError(
                f"authentication cancelled: malformed challenge or too many rounds ({exc})",
                reply=reply,
            ) from exc
        reply = await transport.command(AuthResponse(response), "AUTH", limit)
    if reply.code != 235:
        raise SmtpAuthenticationError(_failure_text(mechanism), reply=reply)
    _complete(transport, mechanism, reply)


def _failure_text(mechanism: sasl.Mechanism) -> str:
    # XOAUTH2/OAUTHBEARER: the server's JSON error says why (an expired token, a scope).
    server_error = getattr(mechanism, "server_error", None)
    if server_error:
        return f"authentication failed ({mechanism.name}: {server_error})"
    return "authentication failed"


def _complete(transport: Transport, mechanism: sasl.Mechanism, reply: Reply) -> None:
    try:
        mechanism.complete()
    except sasl.SaslError as exc:
        # SCRAM: the server could not prove it knows the password; do not trust this peer.
        transport.mark_broken()
        raise SmtpAuthenticationError(
            f"the server's authentication proof was wrong: {exc}", reply=reply
        ) from exc
