"""Server-side reading of command lines, on top of :mod:`trio_smtp.protocol`'s grammar.

This module adds what only a server needs: checking the line end (a bare LF is refused, as
Postfix's ``smtpd_forbid_bare_newline`` does), decoding, and turning the protocol core's
parse errors into reply texts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import _commands

__all__ = ["ParsedCommand", "ParsedPath", "parse_command", "parse_path"]


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
        verb, argument = _commands.parse_command_line(line)
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
        address, params = _commands.parse_path_and_params(argument)
    except ValueError as exc:
        return ParsedPath(error=f"Syntax error: {exc}")
    return ParsedPath(address, params)
