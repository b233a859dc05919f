"""The testing server's settings."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "ALL_EXTENSIONS",
    "ALL_MECHANISMS",
    "DEFAULT_MECHANISMS",
    "LOGIN_PROMPTS",
    "ServerConfig",
    "TlsMode",
]

#: Every extension the server can advertise, each of which can be switched off.
ALL_EXTENSIONS = frozenset(
    {
        "PIPELINING",  # RFC 2920
        "SIZE",  # RFC 1870
        "8BITMIME",  # RFC 6152
        "SMTPUTF8",  # RFC 6531
        "DSN",  # RFC 3461
        "CHUNKING",  # RFC 3030
        "BINARYMIME",  # RFC 3030
        "ENHANCEDSTATUSCODES",  # RFC 2034
        "STARTTLS",  # RFC 3207
        "REQUIRETLS",  # RFC 8689 (advertised only once TLS is up)
        "AUTH",  # RFC 4954
    }
)

#: SASL mechanisms the server implements, in the order advertised.
ALL_MECHANISMS = (
    "SCRAM-SHA-256",  # RFC 7677
    "SCRAM-SHA-1",  # RFC 5802
    "CRAM-MD5",  # RFC 2195
    "PLAIN",  # RFC 4616
    "LOGIN",  # draft-murchison-sasl-login
    "OAUTHBEARER",  # RFC 7628
    "XOAUTH2",  # Google, Microsoft
)

#: The mechanisms offered unless ``auth_mechanisms`` says otherwise: the ones the server
#: offered before SCRAM-SHA-1 and OAUTHBEARER were added, so that the EHLO reply, and the
#: mechanism a client picks from it (OAUTHBEARER before XOAUTH2 for a token), stay as they
#: were for existing tests.  Pass ``auth_mechanisms=ALL_MECHANISMS`` to offer every one.
DEFAULT_MECHANISMS = ("SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN", "XOAUTH2")

#: The LOGIN prompts of draft-murchison-sasl-login's examples (user name, then password).
#: Servers vary them: aiosmtpd sends ``(b"User Name\0", b"Password\0")``, others lower
#: case or no colon; ``login_prompts`` makes the server send such a pair instead.
LOGIN_PROMPTS = (b"Username:", b"Password:")


class TlsMode(enum.Enum):
    """How the server offers TLS."""

    #: Plaintext only; no certificate is made (trustme not needed).
    NONE = "none"
    #: Plaintext, upgraded by STARTTLS (RFC 3207).
    STARTTLS = "starttls"
    #: TLS from the first byte (RFC 8314 "submissions").
    IMPLICIT = "implicit"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything that shapes how the server behaves (faults aside)."""

    hostname: str = "localhost"
    tls: TlsMode = TlsMode.STARTTLS
    #: ``{user: password}``; for XOAUTH2 and OAUTHBEARER the password is the bearer token.
    credentials: Mapping[str, str] = field(default_factory=dict)
    auth_mechanisms: tuple[str, ...] = DEFAULT_MECHANISMS
    #: The LOGIN mechanism's (user name, password) prompts, sent as they are.
    login_prompts: tuple[bytes, bytes] = LOGIN_PROMPTS
    #: Refuse MAIL (and AUTH) before TLS is up.
    require_tls: bool = False
    #: Refuse MAIL before a successful AUTH.
    require_auth: bool = False
    #: Extensions not to advertise nor accept.
    disabled: frozenset[str] = frozenset()
    #: RFC 1870 SIZE: advertised and enforced (octets of un-stuffed data).
    max_message_size: int = 10 * 1024 * 1024
    max_recipients: int = 100
    #: RFC 5321 §4.5.3.1.4: command line, CRLF included.
    max_command_line: int = 512
    #: RFC 4954 §4: an AUTH command or response line may be up to 12288 octets.
    max_auth_line: int = 12288
    #: RFC 5321 §4.5.3.1.6: a line of message text, CRLF included.
    max_data_line: int = 1000
    #: After this many refused commands the server says 421 and closes (as Postfix does).
    max_errors: int = 20
    #: NOOP, VRFY, RSET, EHLO and HELO beyond this many each count as an error (Postfix's
    #: ``smtpd_junk_command_limit``): a client cannot keep a session busy for ever.  As in
    #: Postfix, the count restarts after each message accepted.
    max_junk_commands: int = 100
    #: RFC 5321 §4.5.3.2.7: seconds the server waits for a whole command line, or for any
    #: byte during the TLS handshake, DATA or BDAT, before it says 421 and closes.  ``None``
    #: waits for ever (the server's shutdown still ends the connection).
    idle_timeout: float | None = 300.0
    greeting: str = "ESMTP trio_smtp.testing ready"
    # What a long-running server may hold (issue 10 item 12); ``None`` means no limit.
    #: Sessions served at once; at the limit the server stops accepting (new clients wait
    #: in the kernel's listen backlog) until one ends.
    max_connections: int | None = 100
    #: Messages kept in :attr:`SmtpServer.messages` (and in each connection's record): the
    #: most recent ones; older ones are dropped (``statistics().messages`` still counts them).
    max_kept_messages: int | None = 1000
    #: Connection records kept in :attr:`SmtpServer.connections` (and crashes in
    #: :attr:`SmtpServer.crashes`): the most recent ones.
    max_kept_connections: int | None = 1000
    #: Command records kept in each connection's record: the most recent ones.
    max_kept_commands: int | None = 1000

    def __post_init__(self) -> None:
        unknown = set(self.disabled) - ALL_EXTENSIONS
        if unknown:
            raise ValueError(f"unknown extensions to disable: {sorted(unknown)}")
        bad = set(self.auth_mechanisms) - set(ALL_MECHANISMS)
        if bad:
            raise ValueError(f"unsupported SASL mechanisms: {sorted(bad)}")
        if len(self.login_prompts) != 2 or not all(
            isinstance(prompt, bytes) for prompt in self.login_prompts
        ):
            raise ValueError("login_prompts must be two bytes prompts: user name, password")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ValueError("idle_timeout must be positive (or None)")
        limits = ("max_connections", "max_kept_messages", "max_kept_connections")
        for name in (*limits, "max_kept_commands"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None for no limit)")

    @property
    def idle_seconds(self) -> float:
        """:attr:`idle_timeout` as a number for ``trio.move_on_after`` (inf for None)."""
        return math.inf if self.idle_timeout is None else self.idle_timeout

    def offers(self, extension: str) -> bool:
        """Whether ``extension`` is switched on (TLS and AUTH state aside)."""
        return extension not in self.disabled
