"""The EHLO reply -> :class:`Extensions` (RFC 5321 §4.1.1.1, and each extension's RFC)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

from ._errors import LocalProtocolError
from ._frozen import Frozen, set_field
from ._replies import Reply

__all__ = ["Extensions"]

# The default keywords: read-only, so one empty mapping serves every instance.
_NONE: Mapping[str, tuple[str, ...]] = MappingProxyType({})


class Extensions(Frozen):
    """What the server advertised in its EHLO reply; immutable.

    Keywords are looked up case-insensitively: ``"pipelining" in ext``,
    ``ext.params("AUTH")``.  An empty ``Extensions()`` is what a HELO session has.

    The old ``AUTH=MECH ...`` line some servers add (pre-RFC 4954 clients) is merged into
    ``AUTH``.  A repeated keyword keeps its first line.
    """

    __slots__ = ("keywords", "server_name")
    _not_hashed: ClassVar[frozenset[str]] = frozenset({"keywords"})
    #: Upper-cased keyword -> its parameters, in the order given (read-only).
    keywords: Mapping[str, tuple[str, ...]]
    #: The server's name from the first line of the EHLO reply.
    server_name: str

    def __init__(
        self, keywords: Mapping[str, tuple[str, ...]] = _NONE, server_name: str = ""
    ) -> None:
        set_field(self, "keywords", keywords)
        set_field(self, "server_name", server_name)

    @classmethod
    def from_ehlo_reply(cls, reply: Reply) -> Extensions:
        """Parse a 250 EHLO reply.  Garbage lines are skipped, never fatal.

        Raises LocalProtocolError if ``reply`` is not a 250 reply.
        """
        if reply.code != 250:
            raise LocalProtocolError(f"not an EHLO 250 reply: {reply.code}")
        first = reply.lines[0].split()
        keywords: dict[str, tuple[str, ...]] = {}
        for line in reply.lines[1:]:
            words = line.split()
            if not words:
                continue
            keyword, params = words[0].upper(), tuple(words[1:])
            if keyword.startswith("AUTH="):
                keyword, params = "AUTH", (keyword[5:], *params)
            if not _KEYWORD.fullmatch(keyword):
                continue  # RFC 5321 §4.1.1.1 ehlo-keyword; anything else is noise
            if keyword == "AUTH" and "AUTH" in keywords:
                params = tuple(dict.fromkeys(keywords["AUTH"] + params))
            elif keyword in keywords:
                continue
            keywords[keyword] = params
        return cls(MappingProxyType(keywords), first[0] if first else "")

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and keyword.upper() in self.keywords

    def params(self, keyword: str) -> tuple[str, ...]:
        """Parameters of ``keyword`` (``()`` when absent or bare)."""
        return self.keywords.get(keyword.upper(), ())

    @property
    def max_size(self) -> int | None:
        """RFC 1870 SIZE limit in octets; ``None`` when absent, 0, or not a sane number.

        ``None`` means "no limit announced": SIZE absent, bare, ``0`` (RFC 1870 §4: no
        fixed maximum), not plain ASCII digits, or more than ``2**63 - 1`` (an
        absurd number such as 10**30 is no limit we could ever reach, and parsing
        thousands of digits would waste time).
        """
        params = self.params("SIZE")
        if not params or not _DIGITS.fullmatch(params[0]):
            return None
        size = int(params[0])
        return size if 0 < size <= MAX_SANE_SIZE else None

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """Upper-cased SASL mechanisms from ``AUTH`` and the old ``AUTH=`` form."""
        return frozenset(mech.upper() for mech in self.params("AUTH"))

    # The flags below look the upper-cased key up directly: the same answer as ``in self``
    # without its isinstance and upper() (they are read for every message sent).

    @property
    def pipelining(self) -> bool:
        """RFC 2920 PIPELINING."""
        return "PIPELINING" in self.keywords

    @property
    def starttls(self) -> bool:
        """RFC 3207 STARTTLS."""
        return "STARTTLS" in self.keywords

    @property
    def eightbitmime(self) -> bool:
        """RFC 6152 8BITMIME."""
        return "8BITMIME" in self.keywords

    @property
    def smtputf8(self) -> bool:
        """RFC 6531 SMTPUTF8."""
        return "SMTPUTF8" in self.keywords

    @property
    def dsn(self) -> bool:
        """RFC 3461 DSN."""
        return "DSN" in self.keywords

    @property
    def chunking(self) -> bool:
        """RFC 3030 CHUNKING (BDAT)."""
        return "CHUNKING" in self.keywords

    @property
    def binarymime(self) -> bool:
        """RFC 3030 BINARYMIME."""
        return "BINARYMIME" in self.keywords

    @property
    def enhancedstatuscodes(self) -> bool:
        """RFC 2034 ENHANCEDSTATUSCODES."""
        return "ENHANCEDSTATUSCODES" in self.keywords

    @property
    def requiretls(self) -> bool:
        """RFC 8689 REQUIRETLS."""
        return "REQUIRETLS" in self.keywords


#: Largest SIZE taken at face value (2**63 - 1 octets); anything above means "no limit".
MAX_SANE_SIZE = 2**63 - 1

_KEYWORD = re.compile(r"[A-Z0-9][A-Z0-9-]*")
# Digits only, at most 19 of them (so int() never sees a huge string).
_DIGITS = re.compile(r"[0-9]{1,19}")
