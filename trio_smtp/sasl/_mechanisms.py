"""SASL mechanisms as sans-IO objects (RFC 4954 for SMTP's framing).

The client drives a mechanism like this::

    mech = choose_mechanism(extensions.auth_mechanisms, username, password)
    send(mech.auth_command())                       # starts (or restarts) an exchange
    while reply.code == 334:
        try:
            response = mech.respond(decode_challenge(reply.text))
        except SaslError:
            send(AuthResponse(cancel=True))         # "*"; the server answers 501
            raise SmtpAuthenticationError
        send(AuthResponse(response))
    if reply.code == 235:
        mech.complete()                             # SCRAM: SaslError if the server is unproven
    else:
        raise SmtpAuthenticationError(reply)

:meth:`Mechanism.auth_command` sends the initial response with AUTH when the line fits in 512
octets and otherwise keeps it for the first 334 (RFC 4954 §4); :meth:`Mechanism.respond`
answers that case itself and caps the challenges at :attr:`Mechanism.max_rounds`.  One
mechanism object can authenticate any number of connections: ``auth_command()`` forgets the
previous exchange.  Secrets never appear in ``repr()``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from ..protocol import Auth

if TYPE_CHECKING:
    import scramp

__all__ = [
    "OAUTH_PREFERENCE",
    "PREFERENCE",
    "CramMd5",
    "Login",
    "Mechanism",
    "OAuthBearer",
    "Plain",
    "SaslError",
    "ScramSha1",
    "ScramSha256",
    "XOAuth2",
    "choose_mechanism",
    "choose_oauth_mechanism",
    "decode_challenge",
    "password_mechanisms",
]

#: RFC 5321 §4.5.3.1.4: a command line, CRLF included.
_MAX_COMMAND_LINE = 512


class SaslError(Exception):
    """A challenge the mechanism cannot answer (malformed, unexpected, too many, or a failed
    server proof).  The client cancels the exchange and reports an authentication failure."""


def decode_challenge(text: str) -> bytes:
    """The decoded payload of a 334 reply's text (RFC 4954 §4); SaslError if it is not
    base64.  An empty text is an empty challenge."""
    try:
        return base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise SaslError("334 challenge is not valid base64") from exc


def _check_field(value: str, what: str, forbidden: str) -> bytes:
    """``value`` as UTF-8, refusing characters that would change the message's framing."""
    if any(c in forbidden for c in value):
        raise ValueError(f"{what} contains a forbidden control character")
    return value.encode("utf-8")


class Mechanism:
    """Base class: one SASL mechanism with the credentials it needs.

    Subclasses set :attr:`name`, implement :meth:`initial_response` and/or :meth:`step`, and
    may override :meth:`complete` and :meth:`reset`.  The client calls only
    :meth:`auth_command`, :meth:`respond` and :meth:`complete`.  Pass an instance to the
    client to force that mechanism.
    """

    #: The SASL mechanism name as the server advertises it.
    name: ClassVar[str] = ""
    #: Most 334 challenges answered before the exchange is cancelled (the first 334 that
    #: only asks for a deferred initial response is not counted).
    max_rounds: ClassVar[int] = 4

    def __init__(self, username: str) -> None:
        #: The identity authenticated as (not secret; shown by ``repr``).
        self.username = username
        self._rounds = 0
        self._deferred: bytes | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} username={self.username!r}>"

    # -- driven by the client -----------------------------------------------------------

    def auth_command(self) -> Auth:
        """Start a new exchange: the ``AUTH`` command to send, with the initial response if
        the line fits in 512 octets, else without it (it then answers the first 334)."""
        self.reset()
        response = self.initial_response()
        if response is None or self._fits(response):
            return Auth(self.name, response)
        self._deferred = response  # RFC 4954 §4: too long for the AUTH line
        return Auth(self.name)

    def respond(self, challenge: bytes) -> bytes:
        """Answer one decoded 334 challenge; SaslError when it is malformed, unexpected, or
        one too many (see :attr:`max_rounds`)."""
        if self._deferred is not None:
            # RFC 4422 §5: the server's first challenge to a client-first mechanism is
            # empty; whatever it says, the answer is the initial response we held back.
            response, self._deferred = self._deferred, None
            return response
        self._rounds += 1
        if self._rounds > self.max_rounds:
            raise SaslError(f"{self.name}: more than {self.max_rounds} challenges")
        return self.step(challenge)

    def complete(self) -> None:
        """Called on 235; raise SaslError if the exchange did not finish as it must."""

    # -- implemented by mechanisms ------------------------------------------------------

    def initial_response(self) -> bytes | None:
        """The initial response sent with AUTH, or None to wait for a challenge."""
        return None

    def step(self, challenge: bytes) -> bytes:
        """Answer one challenge (after the round cap is checked); raise SaslError."""
        raise SaslError(f"{self.name}: unexpected challenge")

    def reset(self) -> None:
        """Forget any exchange in progress; subclasses with state extend this."""
        self._rounds = 0
        self._deferred = None

    def _fits(self, response: bytes) -> bool:
        encoded = 4 * -(-len(response) // 3) or 1  # base64 length; "=" for empty
        return len("AUTH ") + len(self.name) + 1 + encoded + 2 <= _MAX_COMMAND_LINE


class Plain(Mechanism):
    """PLAIN (RFC 4616): ``authzid NUL authcid NUL passwd`` as the initial response."""

    name: ClassVar[str] = "PLAIN"
    max_rounds: ClassVar[int] = 0

    def __init__(self, username: str, password: str, authzid: str = "") -> None:
        super().__init__(username)
        # RFC 4616 §2: NUL separates the fields, so none may contain it.
        self._message = b"\0".join(
            [
                _check_field(authzid, "authzid", "\0"),
                _check_field(username, "username", "\0"),
                _check_field(password, "password", "\0"),
            ]
        )

    def initial_response(self) -> bytes:
        return self._message


#: The LOGIN prompts real servers send, normalised by :func:`_login_prompt`: the draft's
#: "Username:" / "Password:", aiosmtpd's "User Name\\0" / "Password\\0", and the same in
#: any case, with or without the colon.
_LOGIN_USER_PROMPTS = frozenset({b"username", b"user name"})
_LOGIN_PASSWORD_PROMPTS = frozenset({b"password"})


def _login_prompt(challenge: bytes) -> bytes:
    """``challenge`` without the decoration servers vary: surrounding spaces and NULs, one
    trailing colon, and case."""
    text = challenge.strip(b" \t\0").lower()
    return text[:-1].rstrip(b" \t") if text.endswith(b":") else text


class Login(Mechanism):
    """LOGIN (draft-murchison-sasl-login): answers a user-name prompt, then a password prompt.

    The draft says "User Name" and "Password"; servers send "Username:", "User Name\\0"
    (aiosmtpd), "username" and the like, so case, a trailing colon, spaces and NULs around
    the prompt are ignored.  Any other prompt is a SaslError, so the password is never sent
    in answer to something else.
    """

    name: ClassVar[str] = "LOGIN"
    max_rounds: ClassVar[int] = 2

    def __init__(self, username: str, password: str) -> None:
        super().__init__(username)
        self._username = _check_field(username, "username", "\0\r\n")
        self._password = _check_field(password, "password", "\0\r\n")

    def step(self, challenge: bytes) -> bytes:
        prompt = _login_prompt(challenge)
        if prompt in _LOGIN_USER_PROMPTS:
            return self._username
        if prompt in _LOGIN_PASSWORD_PROMPTS:
            return self._password
        raise SaslError(
            f"LOGIN: unrecognised prompt {challenge[:40]!r} (neither a user name nor a "
            "password prompt)"
        )


class CramMd5(Mechanism):
    """CRAM-MD5 (RFC 2195): ``username SP hex(HMAC-MD5(password, challenge))``."""

    name: ClassVar[str] = "CRAM-MD5"
    max_rounds: ClassVar[int] = 1

    def __init__(self, username: str, password: str) -> None:
        super().__init__(username)
        # Servers split the response at its last space, so a space in the name is fine.
        self._user = _check_field(username, "username", "\0\r\n")
        self._key = password.encode("utf-8")

    def step(self, challenge: bytes) -> bytes:
        if not challenge:
            raise SaslError("CRAM-MD5: empty challenge")
        digest = hmac.new(self._key, challenge, hashlib.md5).hexdigest()
        return self._user + b" " + digest.encode("ascii")


class _OAuth(Mechanism):
    """Shared by the OAuth 2.0 mechanisms: the token goes in the initial response; a 334
    after it carries a JSON error, answered with :attr:`_error_ack` so that the server
    sends its final 5xx."""

    max_rounds: ClassVar[int] = 1
    _error_ack: ClassVar[bytes] = b""

    def __init__(self, username: str, token: str) -> None:
        super().__init__(username)
        self._user = _check_field(username, "username", "\0\x01\r\n")
        self._token = _check_field(token, "token", "\0\x01\r\n")
        #: The server's JSON error challenge, decoded, if it sent one (no secret in it).
        self.server_error: str | None = None

    def step(self, challenge: bytes) -> bytes:
        self.server_error = challenge.decode("utf-8", errors="replace")
        return self._error_ack

    def reset(self) -> None:
        super().reset()
        self.server_error = None


class XOAuth2(_OAuth):
    """XOAUTH2 (Google and Microsoft): ``user=U^Aauth=Bearer T^A^A``; an error challenge is
    answered with an empty response."""

    name: ClassVar[str] = "XOAUTH2"

    def initial_response(self) -> bytes:
        return b"user=" + self._user + b"\x01auth=Bearer " + self._token + b"\x01\x01"


def _saslname(value: bytes) -> bytes:
    # RFC 5801 §4: "," and "=" in the gs2 authzid are escaped as "=2C" and "=3D".
    return value.replace(b"=", b"=3D").replace(b",", b"=2C")


class OAuthBearer(_OAuth):
    """OAUTHBEARER (RFC 7628): ``n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A``; an error
    challenge is answered with a single ``^A`` (RFC 7628 §3.2.3)."""

    name: ClassVar[str] = "OAUTHBEARER"
    _error_ack: ClassVar[bytes] = b"\x01"

    def __init__(
        self, username: str, token: str, host: str | None = None, port: int | None = None
    ) -> None:
        super().__init__(username, token)
        self._host = None if host is None else _check_field(host, "host", "\0\x01\r\n")
        self._port = port

    def initial_response(self) -> bytes:
        parts = [b"n,a=" + _saslname(self._user) + b","]
        if self._host is not None:
            parts.append(b"host=" + self._host)
        if self._port is not None:
            parts.append(b"port=%d" % self._port)
        parts.append(b"auth=Bearer " + self._token)
        return b"\x01".join(parts) + b"\x01\x01"


class _Scram(Mechanism):
    """SCRAM (RFC 5802, RFC 7677) through :mod:`scramp`, without channel binding.

    Round 1 answers server-first with client-final; round 2 checks the server's signature
    (server-final) and answers empty.  :meth:`complete` refuses a 235 that came before the
    server proved it knows the password.  ``max_iterations`` caps the PBKDF2 work a server
    may ask for, so a hostile one cannot stall the event loop.  ``nonce`` is for tests only.
    """

    max_rounds: ClassVar[int] = 2

    def __init__(
        self,
        username: str,
        password: str,
        *,
        max_iterations: int = 100_000,
        nonce: str | None = None,
    ) -> None:
        super().__init__(username)
        _check_field(username, "username", "\0\r\n")
        self._password = password
        self._max_iterations = max_iterations
        self._nonce = nonce
        self._client: scramp.ScramClient | None = None
        self._verified = False

    def reset(self) -> None:
        # scramp (and the asn1crypto it loads) is imported here, on first use: it took
        # ~17 ms, more than the rest of trio_smtp, and most clients never use SCRAM.
        import scramp

        super().reset()
        self._verified = False
        self._client = scramp.ScramClient(
            [self.name], self.username, self._password, c_nonce=self._nonce
        )

    def initial_response(self) -> bytes:
        if self._client is None:  # not started through auth_command()
            self.reset()
        assert self._client is not None
        first: str = self._client.get_client_first()
        return first.encode("utf-8")

    def step(self, challenge: bytes) -> bytes:
        if self._client is None:
            raise SaslError(f"{self.name}: challenge before AUTH")
        import scramp  # already loaded by reset(): a dictionary lookup

        try:
            message = challenge.decode("utf-8")
            if self._rounds == 1:
                self._check_iterations(message)
                self._client.set_server_first(message)
                final: str = self._client.get_client_final()
                return final.encode("utf-8")
            self._client.set_server_final(message)  # verifies the server signature
        except (UnicodeDecodeError, scramp.ScramException) as exc:
            raise SaslError(f"{self.name}: {exc}") from exc
        self._verified = True
        return b""

    def _check_iterations(self, server_first: str) -> None:
        for attribute in server_first.split(","):
            if attribute.startswith("i="):
                count = attribute[2:]
                # RFC 5802 §7: posit-number is ASCII digits; str.isdigit() also admits "²"
                # and "٣", which int() refuses or reads as a number the server never wrote.
                ascii_digits = count.isascii() and count.isdigit()
                if not ascii_digits or int(count) > self._max_iterations:
                    raise SaslError(f"{self.name}: iteration count {count[:12]!r} refused")

    def complete(self) -> None:
        if not self._verified:
            raise SaslError(f"{self.name}: success before the server proved its identity")


class ScramSha256(_Scram):
    """SCRAM-SHA-256 (RFC 7677)."""

    name: ClassVar[str] = "SCRAM-SHA-256"


class ScramSha1(_Scram):
    """SCRAM-SHA-1 (RFC 5802)."""

    name: ClassVar[str] = "SCRAM-SHA-1"


#: Password mechanisms, strongest first; the first one the server offers is used.
#: SCRAM proves both sides without revealing the password or a replayable value (SHA-256
#: before SHA-1); CRAM-MD5 does not reveal the password to an impostor server, but proves
#: nothing back; PLAIN sends the password as it is (safe only inside TLS, which the client
#: requires); LOGIN is PLAIN with extra round trips, kept for servers that offer only it.
PREFERENCE: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN")

_PASSWORD_MECHANISMS: dict[str, type[ScramSha256 | ScramSha1 | CramMd5 | Plain | Login]] = {
    "SCRAM-SHA-256": ScramSha256,
    "SCRAM-SHA-1": ScramSha1,
    "CRAM-MD5": CramMd5,
    "PLAIN": Plain,
    "LOGIN": Login,
}

#: Token mechanisms, preferred first: the standard one (RFC 7628), then Google's and
#: Microsoft's XOAUTH2.  Used only when the user gives a token, never for a password.
OAUTH_PREFERENCE: tuple[str, ...] = ("OAUTHBEARER", "XOAUTH2")


def _offered_in(offered: Iterable[str], preference: tuple[str, ...]) -> list[str]:
    upper = {name.upper() for name in offered}
    return [name for name in preference if name in upper]


def password_mechanisms(offered: Iterable[str], username: str, password: str) -> list[Mechanism]:
    """Every mechanism in ``offered`` we can use with a password, strongest first (see
    :data:`PREFERENCE`): for a client that falls back when a mechanism fails."""
    names = _offered_in(offered, PREFERENCE)
    return [_PASSWORD_MECHANISMS[name](username, password) for name in names]


def choose_mechanism(offered: Iterable[str], username: str, password: str) -> Mechanism | None:
    """The strongest mechanism in ``offered`` (see PREFERENCE) for password credentials, or
    None when the server offers none we support."""
    candidates = password_mechanisms(offered, username, password)
    return candidates[0] if candidates else None


def choose_oauth_mechanism(
    offered: Iterable[str],
    username: str,
    token: str,
    host: str | None = None,
    port: int | None = None,
) -> Mechanism | None:
    """The preferred OAuth 2.0 mechanism in ``offered`` (see :data:`OAUTH_PREFERENCE`) for
    an access ``token``, or None.  ``host`` and ``port`` go into OAUTHBEARER's message."""
    names = _offered_in(offered, OAUTH_PREFERENCE)
    if not names:
        return None
    if names[0] == "OAUTHBEARER":
        return OAuthBearer(username, token, host, port)
    return XOAuth2(username, token)
