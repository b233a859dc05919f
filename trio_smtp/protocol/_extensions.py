"""The EHLO reply -> :class:`Extensions` (RFC 5321 §4.1.1.1, and each extension's RFC)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._replies import Reply

__all__ = ["Extensions"]


@dataclass(frozen=True, slots=True)
class Extensions:
    """What the server advertised in its EHLO reply; immutable.

    Keywords are looked up case-insensitively: ``"pipelining" in ext``,
    ``ext.params("AUTH")``.  An empty ``Extensions()`` is what a HELO session has.
    """

    #: Upper-cased keyword -> its parameters, in the order given.
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The server's name from the first line of the EHLO reply.
    server_name: str = ""

    @classmethod
    def from_ehlo_reply(cls, reply: Reply) -> Extensions:
        """Parse a 250 EHLO reply.  Garbage lines are skipped, never fatal."""
        raise NotImplementedError

    def __contains__(self, keyword: object) -> bool:
        raise NotImplementedError

    def params(self, keyword: str) -> tuple[str, ...]:
        """Parameters of ``keyword`` (``()`` when absent or bare)."""
        raise NotImplementedError

    @property
    def max_size(self) -> int | None:
        """RFC 1870 SIZE limit in octets; ``None`` when absent, 0, or not a sane number."""
        raise NotImplementedError

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """Upper-cased SASL mechanisms from ``AUTH`` and the old ``AUTH=`` form."""
        raise NotImplementedError

    @property
    def pipelining(self) -> bool:
        raise NotImplementedError

    @property
    def starttls(self) -> bool:
        raise NotImplementedError

    @property
    def eightbitmime(self) -> bool:
        raise NotImplementedError

    @property
    def smtputf8(self) -> bool:
        raise NotImplementedError

    @property
    def dsn(self) -> bool:
        raise NotImplementedError

    @property
    def chunking(self) -> bool:
        raise NotImplementedError

    @property
    def binarymime(self) -> bool:
        raise NotImplementedError

    @property
    def enhancedstatuscodes(self) -> bool:
        raise NotImplementedError

    @property
    def requiretls(self) -> bool:
        raise NotImplementedError
