"""Server side of SMTP AUTH (RFC 4954): SASL mechanisms as sans-IO step machines.

The session feeds each client response (already base64-decoded; ``None`` when AUTH came
without an initial response) to :meth:`ServerMechanism.step` and gets back a
:class:`Challenge` (send ``334 base64``), :class:`Success` (``235``) or :class:`Failure`
(``535``).  Credentials are a plain ``{user: password}`` table; for XOAUTH2 and OAUTHBEARER
the "password" is the bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ._config import LOGIN_PROMPTS
from ._oauthbearer import KVSEP, MalformedRequest, parse_request

__all__ = ["MECHANISMS", "Challenge", "Failure", "ServerMechanism", "Success", "make_mechanism"]


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``334`` with ``data`` base64-encoded and wait for the next response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated as ``identity``."""

    identity: str


@dataclass(frozen=True, slots=True)
class Failure:
    """Authentication failed; ``reason`` is for the record, not the wire."""

    reason: str


Step = Challenge | Success | Failure


class ServerMechanism:
    """One authentication exchange on the server side."""

    name: ClassVar[str] = ""

    def __init__(self, credentials: Mapping[str, str], hostname: str) -> None:
        self._credentials = credentials
        self._hostname = hostname
        self._round = 0

    def step(self, response: bytes | None) -> Step:
        """Advance with the client's (decoded) response."""
        self._round += 1
        return self._step(self._round, response)

    def _step(self, round_: int, response: bytes | None) -> Step:
        raise NotImplementedError

    def _check(self, user: str, password: str) -> Step:
        expected = self._credentials.get(user)
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return Success(user)
        return Failure(f"bad credentials for {user!r}")


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Plain(ServerMechanism):
    """RFC 4616: ``authzid NUL authcid NUL passwd``."""

    name = "PLAIN"

    def _step(self, round_: int, response: bytes | None) -> Step:
        if response is None:
            return Challenge(b"")
        parts = (_text(response) or "").split("\0")
        if len(parts) != 3:
            return Failure("malformed PLAIN response")
        return self._check(parts[1], parts[2])


class Login(ServerMechanism):
    """The de-facto LOGIN mechanism: user name, then password, each prompted with
    ``prompts`` (the draft's "Username:" and "Password:" unless the server is configured
    with the forms other servers send, such as aiosmtpd's "User Name\\0")."""

    name = "LOGIN"

    def __init__(
        self,
        credentials: Mapping[str, str],
        hostname: str,
        prompts: tuple[bytes, bytes] = LOGIN_PROMPTS,
    ) -> None:
        super().__init__(credentials, hostname)
        self._prompts = prompts
        self._user: str | None = None

    def _step(self, round_: int, response: bytes | None) -> Step:
        if response is None:
            return Challenge(self._prompts[0])
        if self._user is None:
            self._user = _text(response) or ""
            return Challenge(self._prompts[1])
        return self._check(self._user, _text(response) or "")


class CramMd5(ServerMechanism):
    """RFC 2195: HMAC-MD5 of a server nonce keyed with the password."""

    name = "CRAM-MD5"

    def __init__(self, credentials: Mapping[str, str], hostname: str) -> None:
        super().__init__(credentials, hostname)
        nonce = f"<{secrets.randbelow(10**10)}.{int(time.time())}@{hostname}>"
        self._nonce = nonce.encode()

    def _step(self, round_: int, response: bytes | None) -> Step:
        if round_ == 1 and response is None:
            return Challenge(self._nonce)
        user, _, digest = (_text(response or b"") or "").rpartition(" ")
        password = self._credentials.get(user)
        if password is None:
            return Failure(f"unknown user {user!r}")
        expected = hmac.new(password.encode(), self._nonce, hashlib.md5).hexdigest()
        # As bytes: compare_digest refuses str with non-ASCII characters (TypeError), and a
        # client's digest may hold any.
        if hmac.compare_digest(expected.encode(), digest.lower().encode()):
            return Success(user)
        return Failure(f"bad CRAM-MD5 digest for {user!r}")


class _OAuthMechanism(ServerMechanism):
    """Shared by the OAuth 2.0 mechanisms: a failure is not a 535 at once but a 334 with a
    JSON error, and the 535 comes after the client acknowledges it."""

    def __init__(self, credentials: Mapping[str, str], hostname: str) -> None:
        super().__init__(credentials, hostname)
        self._failed: str | None = None

    def _step(self, round_: int, response: bytes | None) -> Step:
        if self._failed is not None:
            return self._acknowledged(response or b"")
        if response is None:
            return Challenge(b"")  # RFC 4422 §5: ask for the initial response
        return self._authenticate(response)

    def _authenticate(self, response: bytes) -> Step:
        raise NotImplementedError

    def _acknowledged(self, response: bytes) -> Step:
        """The client answered the error challenge: the exchange fails whatever it says."""
        assert self._failed is not None
        return Failure(self._failed)

    def _fail_with(self, reason: str, error: bytes) -> Challenge:
        self._failed = reason
        return Challenge(error)


class XOAuth2(_OAuthMechanism):
    """Google's XOAUTH2: ``user=U^Aauth=Bearer T^A^A``; errors go out as a JSON challenge."""

    name = "XOAUTH2"

    def _authenticate(self, response: bytes) -> Step:
        fields = dict(
            part.split("=", 1) for part in (_text(response) or "").split("\x01") if "=" in part
        )
        user, auth = fields.get("user", ""), fields.get("auth", "")
        result = self._check(user, auth.removeprefix("Bearer "))
        if isinstance(result, Success):
            return result
        error = {"status": "401", "schemes": "bearer", "scope": "https://mail.example/"}
        return self._fail_with(f"bad token for {user!r}", json.dumps(error).encode())


class OAuthBearer(_OAuthMechanism):
    """OAUTHBEARER (RFC 7628): ``gs2-header ^A host=H^A port=P^A auth=Bearer T^A ^A``.

    The token is checked against ``credentials[authzid]``; without an authzid (it is
    optional, RFC 7628 §3.1) the token alone names the user.  Any failure is an RFC 7628
    §3.2.2 error challenge (``invalid_token``, or ``invalid_request`` for a malformed
    message) that the client must answer with a lone ``^A`` (§3.2.3) before the 535.
    """

    name = "OAUTHBEARER"

    def _authenticate(self, response: bytes) -> Step:
        try:
            request = parse_request(response)
        except MalformedRequest as exc:
            return self._fail_with(str(exc), self._error("invalid_request"))
        user = self._user_for(request.authzid, request.token)
        if user is None:
            return self._fail_with(
                f"bad token for {request.authzid!r}", self._error("invalid_token")
            )
        return Success(user)

    def _acknowledged(self, response: bytes) -> Step:
        if response != KVSEP:
            # RFC 7628 §3.2.3: the only valid answer is a single kvsep; fail all the same.
            return Failure(f"{self._failed}; then {response[:20]!r} instead of a kvsep")
        return super()._acknowledged(response)

    def _user_for(self, authzid: str | None, token: str) -> str | None:
        if authzid is not None:
            return authzid if isinstance(self._check(authzid, token), Success) else None
        # compare_digest with every token, so the time taken does not say which was close.
        matches = [
            user for user in self._credentials if isinstance(self._check(user, token), Success)
        ]
        return matches[0] if len(matches) == 1 else None

    def _error(self, status: str) -> bytes:
        # RFC 7628 §3.2.2: "status" is required; "scope" and "openid-configuration" optional.
        error = {
            "status": status,
            "scope": "https://mail.example/",
            "openid-configuration": f"https://{self._hostname}/.well-known/openid-configuration",
        }
        return json.dumps(error, separators=(",", ":")).encode()


class _Scram(ServerMechanism):
    """RFC 5802 SCRAM through scramp's server, for the mechanism :attr:`name` names; the
    server-final message is a 334."""

    def __init__(self, credentials: Mapping[str, str], hostname: str) -> None:
        super().__init__(credentials, hostname)
        from scramp import ScramMechanism

        self._mechanism = ScramMechanism(self.name)
        self._server: Any = self._mechanism.make_server(self._auth_info)
        self._user: str | None = None
        self._done = False

    def _auth_info(self, user: str) -> Any:
        password = self._credentials.get(user)
        if password is None:
            raise KeyError(user)
        self._user = user
        return self._mechanism.make_auth_info(password)

    def _step(self, round_: int, response: bytes | None) -> Step:
        from scramp import ScramException

        if self._done:
            return Success(self._user or "")
        if response is None:
            return Challenge(b"")
        try:
            if self._server.stage is None:
                self._server.set_client_first(response.decode("utf-8"))
                return Challenge(self._server.get_server_first().encode())
            self._server.set_client_final(response.decode("utf-8"))
            final = self._server.get_server_final().encode()
        except (ScramException, KeyError, UnicodeDecodeError) as exc:
            return Failure(f"SCRAM: {exc!r}")
        # RFC 4954 §4: no additional data with 235, so the server's proof is a challenge
        # and the client answers it with an empty response.
        self._done = True
        return Challenge(final)


class ScramSha256(_Scram):
    """SCRAM-SHA-256 (RFC 7677)."""

    name = "SCRAM-SHA-256"


class ScramSha1(_Scram):
    """SCRAM-SHA-1 (RFC 5802)."""

    name = "SCRAM-SHA-1"


MECHANISMS: dict[str, type[ServerMechanism]] = {
    cls.name: cls for cls in (Plain, Login, CramMd5, XOAuth2, OAuthBearer, ScramSha256, ScramSha1)
}


def make_mechanism(
    name: str,
    credentials: Mapping[str, str],
    hostname: str,
    *,
    login_prompts: tuple[bytes, bytes] = LOGIN_PROMPTS,
) -> ServerMechanism | None:
    """A fresh mechanism object for ``name`` (upper-cased), or ``None`` if unknown;
    ``login_prompts`` are LOGIN's (user name, password) prompts."""
    cls = MECHANISMS.get(name.upper())
    if cls is Login:
        return Login(credentials, hostname, login_prompts)
    return None if cls is None else cls(credentials, hostname)
