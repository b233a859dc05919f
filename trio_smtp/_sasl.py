"""SASL mechanisms as sans-IO objects (RFC 4954 for SMTP's framing).

The client drives a mechanism like this::

    mech = choose_mechanism(extensions.auth_mechanisms, credentials)
    send Auth(mech.name, mech.initial_response())
    while reply.code == 334:
        challenge = base64-decode(reply.text)      # malformed base64 -> cancel with "*"
        send AuthResponse(mech.respond(challenge)) # SaslError -> cancel with "*"
    if reply.code == 235: mech.complete()           # SCRAM: server signature verified here
    else: SmtpAuthenticationError(reply)

Challenge rounds are capped by ``Mechanism.max_rounds``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

__all__ = [
    "CramMd5",
    "Login",
    "Mechanism",
    "Plain",
    "SaslError",
    "choose_mechanism",
    "PREFERENCE",
]


class SaslError(Exception):
    """A challenge the mechanism cannot answer (malformed, or a failed server proof)."""


class Mechanism:
    """Base class: one authentication exchange."""

    #: The SASL mechanism name as the server advertises it.
    name: ClassVar[str] = ""
    #: Most 334 challenges answered before the exchange is cancelled.
    max_rounds: ClassVar[int] = 4

    def initial_response(self) -> bytes | None:
        """The initial response sent with AUTH, or None to wait for a challenge."""
        raise NotImplementedError

    def respond(self, challenge: bytes) -> bytes:
        """Answer one decoded 334 challenge; raise SaslError when it is malformed."""
        raise NotImplementedError

    def complete(self) -> None:
        """Called on 235; raise SaslError if the exchange did not finish as it must."""


class Plain(Mechanism):
    """PLAIN (RFC 4616)."""

    name: ClassVar[str] = "PLAIN"

    def __init__(self, username: str, password: str, authzid: str = "") -> None:
        raise NotImplementedError


class Login(Mechanism):
    """LOGIN (draft-murchison-sasl-login): answers "Username:" then "Password:"."""

    name: ClassVar[str] = "LOGIN"

    def __init__(self, username: str, password: str) -> None:
        raise NotImplementedError


class CramMd5(Mechanism):
    """CRAM-MD5 (RFC 2195)."""

    name: ClassVar[str] = "CRAM-MD5"

    def __init__(self, username: str, password: str) -> None:
        raise NotImplementedError


#: Strongest first; the first one the server offers is used.
PREFERENCE: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN")


def choose_mechanism(
    offered: Iterable[str], username: str, password: str
) -> Mechanism | None:
    """The strongest mechanism in ``offered`` (see PREFERENCE) for password credentials, or
    None when the server offers none we support."""
    raise NotImplementedError
