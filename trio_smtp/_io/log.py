"""The protocol log: every command and reply, through the ``trio_smtp.protocol`` logger.

Enable it with ``logging.getLogger("trio_smtp.protocol").setLevel(logging.DEBUG)`` (plus a
handler).  Records look like ``mail.example.com:587 C: MAIL FROM:<a@example.org>`` and
``mail.example.com:587 S: 250 2.1.0 Ok``.

Theory of operation: the log is told what the connection already knows -- the command
object it encodes (:meth:`ProtocolLog.log_command`), the message data it dot-stuffs (only
its size, :meth:`ProtocolLog.log_data`), the end of the data, and every reply it parses --
never the bytes written.  What is secret is decided by the command's *type*, not by
parsing what goes out, so the log cannot lose track of the session and enabling it
mid-session can never show a secret:

* AUTH secrets.  ``AUTH <mechanism> <initial response>`` (RFC 4954 §4) is logged as
  ``AUTH <mechanism> <redacted>``, and every response to a challenge (an
  :class:`~trio_smtp.protocol.AuthResponse`: LOGIN's user name and password, a deferred
  XOAUTH2 or OAUTHBEARER token) as ``<redacted>``.  Server challenges (334) are logged as
  received: they carry no client secret.
* Message data.  After DATA only the number of octets is logged, then ``.`` for the
  terminator; each BDAT chunk (RFC 3030) is logged as its command line and its size.

Formatting happens only when the logger is enabled for DEBUG (one ``isEnabledFor`` check
per command or reply).  Use one :class:`ProtocolLog` per connection.
"""

from __future__ import annotations

import logging

from ..protocol import Auth, AuthResponse, Bdat, Command, Reply

__all__ = ["LOGGER_NAME", "ProtocolLog", "protocol_logger"]

#: The name of the one logger the library writes the protocol to.
LOGGER_NAME = "trio_smtp.protocol"
protocol_logger = logging.getLogger(LOGGER_NAME)

_REDACTED = "<redacted>"
# Control characters are shown escaped, so a hostile reply cannot forge log lines.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def _printable(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace").translate(_ESCAPES)


class ProtocolLog:
    """The protocol log of one connection.  ``peer`` prefixes every record."""

    def __init__(self, peer: str = "", *, logger: logging.Logger | None = None) -> None:
        self._logger = logger if logger is not None else protocol_logger
        self._prefix = f"{peer} " if peer else ""
        # Message data octets (after 354) since the last end of data or reply.
        self._data_octets = 0

    def _debug(self, direction: str, text: str) -> None:
        self._logger.debug("%s%s: %s", self._prefix, direction, text)

    def note(self, text: str) -> None:
        """Log a connection event (connected, TLS established, closed...)."""
        if self._logger.isEnabledFor(logging.DEBUG):
            self._debug("--", text)

    def log_command(self, command: Command, line: bytes) -> None:
        """Record a command as the connection encoded it (``line``: its bytes); secrets
        and BDAT chunks are shown by the command's type (see the module docstring)."""
        if not self._logger.isEnabledFor(logging.DEBUG):
            return
        command_type = type(command)
        if command_type is AuthResponse:
            self._debug("C", _REDACTED)
        elif command_type is Auth:
            assert isinstance(command, Auth)
            shown = f"AUTH {command.mechanism.upper()}"
            secret = command.initial_response is not None
            self._debug("C", f"{shown} {_REDACTED}" if secret else shown)
        elif command_type is Bdat:
            assert isinstance(command, Bdat)
            size = len(command.chunk)
            self._debug("C", f"BDAT {size} LAST" if command.last else f"BDAT {size}")
            self._debug("C", f"<message data: {size} octets>")
        else:
            self._debug("C", _printable(line.rstrip(b"\r\n")))

    def log_data(self, octets: int) -> None:
        """Record message data sent after 354: only its size is ever shown."""
        self._data_octets += octets

    def log_end_of_data(self) -> None:
        """Record the terminator that ends the message data (RFC 5321 §4.1.1.4)."""
        octets, self._data_octets = self._data_octets, 0
        if self._logger.isEnabledFor(logging.DEBUG):
            self._debug("C", f"<message data: {octets} octets>")
            self._debug("C", ".")

    def log_received(self, reply: Reply) -> None:
        """Record one complete reply from the server."""
        octets, self._data_octets = self._data_octets, 0
        if not self._logger.isEnabledFor(logging.DEBUG):
            return
        if octets:
            # An early reply in the middle of message data (RFC 5321 §4.1.1.4 allows none,
            # but servers do it): say how much went out before it.
            self._debug("C", f"<message data: {octets} octets so far>")
        last = len(reply.lines) - 1
        for index, line in enumerate(reply.lines):
            separator = "-" if index < last else " "
            text = f"{reply.code}{separator}{line}".rstrip(" ")
            self._debug("S", text.translate(_ESCAPES))
