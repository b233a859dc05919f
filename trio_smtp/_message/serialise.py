"""An :class:`~email.message.EmailMessage` -> the bytes of its SMTP data, as the stdlib writes them.

Theory of operation: :func:`serialise` produces exactly the bytes of ``BytesGenerator``
flattening a copy of the message with Bcc and Resent-Bcc deleted (what smtplib and
aiosmtplib send), with CRLF line ends, but cheaper:

- no copy: :class:`_Generator` skips the hidden fields while writing the top-level header
  section (:class:`_WithoutHidden`); a copy is made only when generating would change the
  caller's message (a multipart without a boundary) or the message writes its own headers;
- the caller's policy is cloned once per (policy, utf8) with CRLF line ends and cached
  (:func:`_policy`): cloning costs more than generating a small message's headers;
- a plain ``EmailPolicy`` becomes :class:`_OneLinePolicy`, which writes a header that fits
  on one line directly (:func:`_one_line`) instead of through the stdlib's folding
  algorithm; anything that does not plainly fit is folded by the stdlib.

Every shortcut falls back to the stdlib path when unsure: the bytes never differ from it
(``tests/test_message.py`` compares them).
"""

from __future__ import annotations

import copy
import email.headerregistry
import email.policy
import sys
from collections.abc import Iterator
from email.generator import BytesGenerator
from email.message import Message
from io import BytesIO

__all__ = ["serialise"]

#: Fields left out of the data: the envelope carries them (RFC 5322 §3.6.3, §3.6.6).
_HIDDEN_FIELDS = frozenset({"bcc", "resent-bcc"})


class _WithoutHidden:
    """A message's header fields as the generator reads them, without Bcc and Resent-Bcc."""

    __slots__ = ("_message",)

    def __init__(self, message: Message) -> None:
        self._message = message

    def raw_items(self) -> Iterator[tuple[str, object]]:
        return ((n, v) for n, v in self._message.raw_items() if n.lower() not in _HIDDEN_FIELDS)


class _Generator(BytesGenerator):
    """A BytesGenerator that leaves Bcc and Resent-Bcc out of the top-level header section.

    The same bytes as generating a copy with those fields deleted (as smtplib and aiosmtplib
    do), without copying the message.  Sub-parts are written by clones, which keep theirs.
    """

    _strip_hidden = False

    def _write_headers(self, msg: Message) -> None:
        if self._strip_hidden:  # only ever the top-level message (or the deepcopy of it
            # Generator._write makes when it re-encodes the transfer encoding)
            msg = _WithoutHidden(msg)  # type: ignore[assignment]  # raw_items() is all it reads
        super()._write_headers(msg)  # type: ignore[misc]  # private in typeshed


class _OneLinePolicy(email.policy.EmailPolicy):
    """EmailPolicy whose fold_binary writes a header that fits on one line directly.

    The stdlib folds every header through its parse tree (``_refold_parse_tree``), about three
    quarters of the cost of flattening a small message.  For a registry header whose whole
    line is encodable, fits in ``max_line_length`` and holds no CR or LF, that algorithm
    appends the label, one space and ``str(parse_tree)`` to a single line: exactly what
    :func:`_one_line` writes.  Anything else is folded by the stdlib.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        return _one_line(self, value) or super().fold_binary(name, value)


_BASE_FOLD = email.headerregistry.BaseHeader.fold
#: Parse tree tops that _refold_parse_tree may encode or fold even when they fit.
_SPECIAL_TOKENS = frozenset({"ptext", "vtext", "mime-parameters"})


def _one_line(policy: email.policy.EmailPolicy, value: object) -> bytes | None:
    if getattr(type(value), "fold", None) is not _BASE_FOLD:
        return None  # a plain string (parsed message) or a header class with its own fold
    tree = getattr(value, "_parse_tree", None)
    if not tree or getattr(tree, "token_type", None) in _SPECIAL_TOKENS:
        return None
    line = f"{value.name}: {tree}"  # type: ignore[attr-defined]  # BaseHeader.name
    if len(line) > (policy.max_line_length or sys.maxsize) or "\r" in line or "\n" in line:
        return None
    try:
        return (line + policy.linesep).encode("utf-8" if policy.utf8 else "ascii")
    except UnicodeEncodeError:  # non-ASCII (encoded words) or surrogates (8-bit source)
        return None


#: Serialisation policies by (caller's policy, utf8): cloning one costs more than a lookup.
_POLICIES: dict[tuple[object, bool], email.policy.Policy] = {}
_POLICIES_MAX = 32


def _policy(message: Message, utf8: bool) -> email.policy.Policy:
    key = (message.policy, utf8)
    policy = _POLICIES.get(key)
    if policy is None:
        if isinstance(message.policy, email.policy.EmailPolicy):
            policy = message.policy.clone(linesep="\r\n", utf8=utf8)
        else:  # compat32 cannot write UTF-8 headers: the SMTP policies can
            policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
        if type(policy) is email.policy.EmailPolicy:  # a subclass may fold its own way
            policy = _as_one_line(policy)
        if len(_POLICIES) >= _POLICIES_MAX:
            _POLICIES.clear()
        _POLICIES[key] = policy
    return policy


def _as_one_line(policy: email.policy.EmailPolicy) -> _OneLinePolicy:
    # The same attributes, as Policy.clone copies them.
    fast = _OneLinePolicy.__new__(_OneLinePolicy)
    for attr, value in policy.__dict__.items():
        object.__setattr__(fast, attr, value)
    return fast


def serialise(message: Message, utf8: bool) -> bytes:
    """The message without Bcc/Resent-Bcc, CRLF line ends, serialised once."""
    buffer = BytesIO()
    policy = _policy(message, utf8)
    if _needs_copy(message):
        # copy.copy shares the payload but not the header list: Message.__delitem__ rebuilds
        # it, so the caller's message keeps its Bcc (as smtplib.send_message does).
        stripped = copy.copy(message)
        del stripped["Bcc"]
        del stripped["Resent-Bcc"]
        plain = BytesGenerator(buffer, mangle_from_=False, policy=policy)
        plain.flatten(stripped, linesep="\r\n")
    else:
        generator = _Generator(buffer, mangle_from_=False, policy=policy)
        generator._strip_hidden = True
        # No linesep=: the policy's is already CRLF, and passing one clones the policy again.
        generator.flatten(message)
    return buffer.getvalue()


def _needs_copy(message: Message) -> bool:
    """True when generating would change the caller's message itself.

    Generator._handle_multipart sets a boundary on a multipart message that has none: only
    a copy may be changed.  A message that writes its own headers is not filtered either.
    """
    if hasattr(message, "_write_headers"):
        return True
    return message.is_multipart() and message.get_boundary() is None
