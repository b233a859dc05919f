"""The server's side of the SMTP grammar: what :mod:`trio_smtp.protocol` writes, read back.

The protocol core is the client: it validates and encodes commands (RFC 5321 §4.1), stuffs
message data (§4.5.2) and parses replies (§4.2).  A server does the reverse, and only the
testing server needs it, so it lives here: splitting command lines, parsing MAIL/RCPT paths
and parameters (§4.1.2), xtext-decoding DSN values (RFC 3461 §4), un-stuffing data, and
formatting replies.  On top of that, what a server adds: checking the line end (a bare LF
is refused, as Postfix's ``smtpd_forbid_bare_newline`` does) and turning parse errors into
reply texts.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..protocol import LocalProtocolError, RemoteProtocolError

__all__ = [
    "CommandSyntaxError",
    "ParsedCommand",
    "ParsedPath",
    "decode_data",
    "format_reply",
    "parse_command",
    "parse_command_line",
    "parse_path",
    "parse_path_and_params",
    "xtext_decode",
]


class CommandSyntaxError(RemoteProtocolError, ValueError):
    """A client's command line broke the RFC 5321 grammar.

    Raised by :func:`parse_command_line` and :func:`parse_path_and_params`.  ``code`` is
    the reply a server should give: 500 (line or command unrecognisable) or 501 (bad arguments).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# The patterns are compiled on first use: the pytest plugin imports this package in every
# test run, most of which never start a server.


@functools.cache
def _line_control() -> re.Pattern[str]:
    return re.compile(r"[\x00-\x1f\x7f]")


@functools.cache
def _path_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """``FROM:``/``TO:`` with an optional space; a path: "<", then quoted strings or
    anything but brackets and quotes, then ">"."""
    return (
        re.compile(r"(?:FROM|TO):[ ]?", re.IGNORECASE),
        re.compile(r'<((?:"(?:[^"\\]|\\.)*"|[^<>"])*)>'),
    )


@functools.cache
def _param_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """RFC 5321 §4.1.2 esmtp-keyword; the value is any run of non-space, non-"="
    characters (esmtp-value, widened to UTF-8 by RFC 6531 §3.3)."""
    return re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*"), re.compile(r"[^\s=]+")


def parse_command_line(line: bytes) -> tuple[str, str]:
    """Split one command line into ``(VERB, argument)``.

    The line end (CRLF or LF) is removed, the verb upper-cased, the argument stripped of
    surrounding spaces: ``b"mail FROM:<a@b> SIZE=10\\r\\n"`` -> ``("MAIL", "FROM:<a@b>
    SIZE=10")``.  Raises :class:`CommandSyntaxError` (code 500) for a
    line that is not UTF-8, contains a control character (a bare CR included), or whose
    verb is not alphabetic (an empty line included).
    """
    if line.endswith(b"\r\n"):
        line = line[:-2]
    elif line.endswith(b"\n"):
        line = line[:-1]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandSyntaxError(500, "command line is not UTF-8") from None
    if _line_control().search(text):
        raise CommandSyntaxError(500, "control character in command line")
    verb, _, argument = text.partition(" ")
    if not (verb.isascii() and verb.isalpha()):
        raise CommandSyntaxError(500, f"unrecognised command {verb[:20]!r}")
    return verb.upper(), argument.strip(" ")


def parse_path_and_params(argument: str) -> tuple[str, dict[str, str | None]]:
    """Parse a MAIL/RCPT argument into ``(address, {KEYWORD: value})``.

    A leading ``FROM:`` or ``TO:`` (any case, one optional space after the colon) is
    skipped, then ``<path>`` and space-separated ``KEYWORD[=value]`` parameters
    (RFC 5321 §4.1.2).  The address comes back without brackets and without an obsolete
    source route (``<@a,@b:u@c>`` -> ``u@c``, RFC 5321 §4.1.2 / Appendix C); ``<>`` gives
    ``""``.  The address is not otherwise validated (use
    :func:`~trio_smtp.protocol.validate_address`); keywords are upper-cased, values are
    raw (decode ENVID/ORCPT with :func:`xtext_decode`), a bare keyword maps to ``None``.
    Raises :class:`CommandSyntaxError` (code 501) for a missing or
    unterminated path, text glued to the path, a malformed or repeated parameter.
    """
    path_prefix, path_pattern = _path_patterns()
    prefix = path_prefix.match(argument)
    rest = argument[prefix.end() :] if prefix else argument
    path = path_pattern.match(rest)
    if path is None:
        raise CommandSyntaxError(501, "expected a path in angle brackets")
    address = _strip_source_route(path.group(1))
    tail = rest[path.end() :]
    if tail and not tail.startswith(" "):
        raise CommandSyntaxError(501, "unexpected text after the path")
    return address, _parse_params(tail.split())


def _strip_source_route(address: str) -> str:
    if not address.startswith("@"):
        return address
    _route, colon, mailbox = address.partition(":")
    if not colon:
        raise CommandSyntaxError(501, "malformed source route")
    return mailbox


def _parse_params(tokens: list[str]) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    keyword_pattern, value_pattern = _param_patterns()
    for token in tokens:
        keyword, eq, value = token.partition("=")
        if not keyword_pattern.fullmatch(keyword) or (eq and not value_pattern.fullmatch(value)):
            raise CommandSyntaxError(501, f"malformed parameter {token[:40]!r}")
        keyword = keyword.upper()
        if keyword in params:
            raise CommandSyntaxError(501, f"parameter {keyword} given twice")
        params[keyword] = value if eq else None
    return params


def xtext_decode(value: str) -> str:
    """Inverse of :func:`~trio_smtp.protocol.xtext_encode` (RFC 3461 §4); raises
    LocalProtocolError on a malformed ``+HH``, a character outside xtext, or octets that are
    not UTF-8.  Lower-case hex is accepted."""
    octets = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        if char == "+":
            pair = value[i + 1 : i + 3].upper()
            if len(pair) != 2 or any(c not in _HEX for c in pair):
                raise LocalProtocolError(f"malformed xtext escape in {value!r}")
            octets.append(int(pair, 16))
            i += 3
        elif "!" <= char <= "~" and char != "=":
            octets.append(ord(char))
            i += 1
        else:
            raise LocalProtocolError(f"invalid character {char!r} in xtext")
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        raise LocalProtocolError(f"xtext {value!r} does not decode to UTF-8") from None


_HEX = "0123456789ABCDEF"


def decode_data(data: bytes) -> bytes:
    """Un-stuff DATA bytes (RFC 5321 §4.5.2).

    ``data`` is what the client sent after the 354 reply up to, but not including, the
    terminator line ``.CRLF``: so it is empty or ends with the CRLF of the last line.  The
    leading "." of every line (lines end at CRLF only) is removed.  For any body,
    ``decode_data(encode_data(body)[:-3]) == normalize_line_endings(body)`` (the encoders of
    :mod:`trio_smtp.protocol`).

    Raises ValueError if ``data`` contains a line that is a lone ".": that is the
    terminator, so the data was not cut at it.
    """
    if data.startswith(b".\r\n") or b"\r\n.\r\n" in data:
        raise ValueError("DATA payload contains the terminator line")
    if data[:1] == b".":
        data = data[1:]
    return data.replace(b"\r\n.", b"\r\n")


def format_reply(code: int, text: str | list[str] | tuple[str, ...] = "") -> bytes:
    """Serialise a reply as a server does.

    Multi-line text (a list, or a string with ``\\n``) becomes ``NNN-`` lines ending with
    ``NNN <last>``; an empty last line is the bare ``NNN``.  Text is encoded as UTF-8
    (RFC 6531 §3.7.4).  Raises :class:`~trio_smtp.protocol.LocalProtocolError` for a code
    outside 200-599, or text containing CR, NUL or another control character (a list item
    must not contain ``\\n`` either).
    """
    if type(code) is not int or not 200 <= code <= 599:
        raise LocalProtocolError(f"reply code must be an int in 200-599, not {code!r}")
    lines = text.split("\n") if isinstance(text, str) else list(text)
    if not lines:
        lines = [""]
    for line in lines:
        if not isinstance(line, str) or _CONTROL.search(line):
            raise LocalProtocolError(f"invalid reply text {line!r}")
    out = [f"{code}-{line}\r\n" for line in lines[:-1]]
    out.append(f"{code} {lines[-1]}\r\n" if lines[-1] else f"{code}\r\n")
    return "".join(out).encode("utf-8")


# Control characters other than TAB (which RFC 5321 §4.2 textstring admits).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    """A command line split into an upper-cased verb and its argument.

    ``error`` is the reply text when the line cannot be a command at all.
    """

    verb: str
    argument: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedPath:
    """``FROM:<address> params`` / ``TO:<address> params``; ``error`` on bad syntax."""

    address: str = ""
    params: dict[str, str | None] | None = None
    error: str | None = None


def parse_command(line: bytes) -> ParsedCommand:
    """Split a received line (line end included)."""
    try:
        verb, argument = parse_command_line(line)
    except ValueError as exc:
        return ParsedCommand("", "", f"Error: {exc}")
    if not line.endswith(b"\r\n"):
        # RFC 5321 §2.3.8: lines end in CRLF; a bare LF is a sign of smuggling.
        return ParsedCommand(verb, argument, "Error: bare <LF> received")
    return ParsedCommand(verb, argument)


def parse_path(argument: str, keyword: str) -> ParsedPath:
    """Parse the argument of MAIL (``keyword="FROM"``) or RCPT (``"TO"``)."""
    prefix = keyword + ":"
    if argument[: len(prefix)].upper() != prefix:
        command = "MAIL FROM" if keyword == "FROM" else "RCPT TO"
        return ParsedPath(error=f"Syntax: {command}:<address>")
    try:
        address, params = parse_path_and_params(argument)
    except ValueError as exc:
        return ParsedPath(error=f"Syntax error: {exc}")
    return ParsedPath(address, params)
