"""Address header fields read with the public ``email`` API: every address of a field, or a
ValueError naming the field and the part that is not an address (design rule 13).

Theory of operation: the stdlib's header registry parses an address list and, for a part
it cannot read, records an ``InvalidHeaderDefect`` and yields only the other addresses --
sending would reach a subset in silence.  :func:`every_address` refuses such a field.  To
name the part at fault it splits the field's unfolded source at the commas that separate
addresses (RFC 5322 §3.4: not inside a quoted string, a comment, angle brackets or a domain
literal) and parses each part alone: a small hand-written splitter, because the stdlib has
no public address-list splitter that keeps the parts it cannot read.
"""

from __future__ import annotations

import email.errors
from typing import Any

__all__ = ["default_policy", "every_address", "fetch_header", "parse_address_list"]


def parse_address_list(text: str, where: str) -> list[str]:
    """The addr-specs of the address list ``text`` (RFC 5322 §3.4), read as a To field
    is; ValueError naming ``where`` (``"--to"``) and the first part that is not an address."""
    return every_address(fetch_header(default_policy(), "To", text, where), where)


def default_policy() -> Any:
    """``email.policy.default``.  email.policy and the serialiser (with the header registry
    and parser they load, ~2.5 ms) are imported when an :class:`~email.message.Message` is
    first prepared, not with the client: whoever builds an ``EmailMessage`` has loaded
    them already, and whoever sends bytes never needs them."""
    import email.policy

    return email.policy.default


def fetch_header(policy: Any, name: str, raw: object, where: str | None = None) -> object:
    """``policy.header_fetch_parse(name, raw)``; ValueError when the stdlib's parser fails
    on the value (it raises AttributeError for ``To: a@b, x@[1.2.3.4``, a parsed message's
    field being parsed only when it is read)."""
    try:
        return policy.header_fetch_parse(name, raw)
    except Exception as exc:  # whatever the parser's bug raises: the input is at fault
        where = where or f"the {name} header"
        raise ValueError(f"{where} cannot be parsed: {str(raw)[:80]!r}") from exc


def every_address(header: Any, where: str | None = None) -> list[str]:
    """The addr-specs of an address header object; ValueError when a part of it is not an
    address: the stdlib then records an InvalidHeaderDefect and yields only the others."""
    specs = [address.addr_spec for address in header.addresses]
    invalid = email.errors.InvalidHeaderDefect
    if any(isinstance(defect, invalid) for defect in header.defects) or not all(
        spec and spec != "<>" for spec in specs
    ):
        where = where or f"the {header.name} header"
        raise ValueError(
            f"{where} holds {_unparsable_part(header)!r}, which is not an address: nothing "
            "is sent to the rest of its list"
        )
    return specs


def _unparsable_part(header: Any) -> str:
    """The first part of ``header`` that does not parse as an address on its own (the
    public header parser, part by part); the whole value when no single part is to blame."""
    # A header object's str() drops what did not parse; its unfolded form is the source.
    folded = header.fold(policy=default_policy().clone(max_line_length=0))
    value: str = folded.partition(":")[2].strip()
    for part in _address_list_parts(value):
        try:
            parsed = default_policy().header_factory(header.name, part)
            specs = [address.addr_spec for address in parsed.addresses]
        except Exception:  # the parser's own bugs (see _fetch): that part is at fault
            return part
        defective = any(
            isinstance(defect, email.errors.InvalidHeaderDefect) for defect in parsed.defects
        )
        if defective or not specs or not all(spec and spec != "<>" for spec in specs):
            return part
    return value


_OPENING = {'"': '"', "(": ")", "<": ">", "[": "]"}


def _address_list_parts(value: str) -> list[str]:
    """``value`` split at the commas that separate addresses (RFC 5322 §3.4): not those
    inside a quoted string, a comment, angle brackets or a domain literal."""
    parts, start, closing = [], 0, ""
    escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and closing[-1:] in ('"', ")"):
            escaped = True
        elif closing:
            if char == closing[-1]:
                closing = closing[:-1]
            elif char == "(" and closing[-1] == ")":
                closing += ")"  # comments nest (RFC 5322 §3.2.2)
        elif char in _OPENING:
            closing = _OPENING[char]
        elif char == ",":
            parts.append(value[start:index])
            start = index + 1
    parts.append(value[start:])
    return [part.strip() for part in parts if part.strip()]
