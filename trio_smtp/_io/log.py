"""The protocol log: every command and reply, through the ``trio_smtp.protocol`` logger.

Enable it with ``logging.getLogger("trio_smtp.protocol").setLevel(logging.DEBUG)`` (plus a
handler).  Records look like ``mail.example.com:587 C: MAIL FROM:<a@example.org>`` and
``mail.example.com:587 S: 250 2.1.0 Ok``.

Two things never reach the log:

* AUTH secrets.  ``AUTH <mechanism> <initial response>`` is logged as
  ``AUTH <mechanism> <redacted>``, and every line the client sends while an AUTH exchange is
  in progress (RFC 4954 §4: until a reply other than 334) becomes ``<redacted>``.  Server
  challenges (334) are logged as received: they carry no client secret.
* Message data.  Between the 354 reply to DATA and the ``CRLF.CRLF`` terminator, and inside
  each BDAT chunk (RFC 3030), only the number of octets is logged.

The driver passes *everything* it writes to :meth:`ProtocolLog.log_sent` and every reply to
:meth:`ProtocolLog.log_received`; the log works out for itself what is a command, a secret
or message data, so a driver cannot leak data by forgetting to say so.  A driver that writes
the message data past the log (never showing it) is fine too: the reply after a 354 with no
data seen ends the data phase (logged as ``<message data, not shown>``), and BDAT chunk
bookkeeping resets once every command has its reply.  A 334 reply alone puts the log in
AUTH mode, so a secret is redacted even when the AUTH line itself was never seen.

Decoding and formatting happen only when the logger is enabled for DEBUG (one
``isEnabledFor`` check per write or reply).  Without ``at_boundary`` the bookkeeping always
runs, so enabling the log mid-session is safe.  A driver that can tell when every command
has its reply sets ``at_boundary`` (the transport does): the bookkeeping then stops while
the logger is off, and a log switched on mid-session is *out of sync*: it shows only how
many octets each write held until a reply arrives at a boundary, where the state is known
again from that reply alone.  Use one :class:`ProtocolLog` per connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..protocol import Reply

__all__ = ["LOGGER_NAME", "ProtocolLog", "protocol_logger"]

#: The name of the one logger the library writes the protocol to.
LOGGER_NAME = "trio_smtp.protocol"
protocol_logger = logging.getLogger(LOGGER_NAME)

_REDACTED = "<redacted>"
_TERMINATOR = b"\r\n.\r\n"  # RFC 5321 §4.1.1.4
# Control characters are shown escaped, so a hostile reply cannot forge log lines.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def _printable(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace").translate(_ESCAPES)


class ProtocolLog:
    """The protocol log of one connection.  ``peer`` prefixes every record."""

    def __init__(self, peer: str = "", *, logger: logging.Logger | None = None) -> None:
        self._logger = logger if logger is not None else protocol_logger
        self._prefix = f"{peer} " if peer else ""
        self._in_auth = False
        self._in_data = False
        self._data_tail = b""
        self._bdat_remaining = 0
        self._data_octets = 0
        # Data octets seen since the last 354: zero means the driver does not pass message
        # data here, so the next reply (to the terminator) ends the data phase.
        self._data_seen = 0
        # Command lines (and terminators) written and not yet answered (RFC 2920: replies
        # come in order).  At zero every BDAT chunk has been received by the server.
        self._unanswered = 0
        #: Set by a driver: True when every command written has its reply and no message
        #: data or BDAT chunk can follow without a new reply (see the module docstring).
        self.at_boundary: Callable[[], bool] | None = None
        self._synced = True

    def _debug(self, direction: str, text: str) -> None:
        self._logger.debug("%s%s: %s", self._prefix, direction, text)

    def note(self, text: str) -> None:
        """Log a connection event (connected, TLS established, closed...)."""
        if self._logger.isEnabledFor(logging.DEBUG):
            self._debug("--", text)

    def log_sent(self, data: bytes | bytearray | memoryview) -> None:
        """Record bytes written to the server: command lines, pipelined groups, message
        data, BDAT chunks, AUTH responses, in any mix and split."""
        enabled = self._logger.isEnabledFor(logging.DEBUG)
        if not self._synced or (not enabled and self.at_boundary is not None):
            self._synced = False  # skip the bookkeeping; resync at a boundary reply
            if enabled:
                # Could be a secret or message data: show nothing but its size.
                self._debug("C", f"<{len(data)} octets not shown: log resynchronising>")
            return
        data = bytes(data)
        position = 0
        while position < len(data):
            if self._in_data:
                position = self._consume_data(data, position, enabled)
            elif self._bdat_remaining:
                position = self._consume_chunk(data, position, enabled)
            else:
                position = self._consume_line(data, position, enabled)

    def log_received(self, reply: Reply) -> None:
        """Record one complete reply from the server."""
        enabled = self._logger.isEnabledFor(logging.DEBUG)
        if not self._synced or (not enabled and self.at_boundary is not None):
            self._resync(reply, enabled)
            return
        self._unanswered = max(self._unanswered - 1, 0)
        if self._in_data and not self._data_seen:
            # The driver wrote the data without showing it to us: this is the reply to the
            # terminator (or an early reply), so the data phase is over either way.
            self._in_data = False
            if enabled:
                self._debug("C", "<message data, not shown>")
        elif enabled and (self._data_octets or self._bdat_remaining):
            # An early reply in the middle of message data (RFC 5321 §4.1.1.4 allows none,
            # but servers do it): say how much went out before it.
            self._debug("C", f"<message data: {self._data_octets} octets so far>")
        if not self._unanswered:
            # Every BDAT has its reply, so the server has every chunk (RFC 3030 §2): none
            # can still be in progress, even if the driver never showed us its bytes.
            self._bdat_remaining = 0
        self._data_octets = 0
        # RFC 4954 §4: the exchange goes on exactly while 334 comes back.  Set here too, so
        # an AUTH line this log never saw still has its responses redacted.
        self._in_auth = reply.code == 334
        if reply.code == 354:
            self._in_data = True
            self._data_seen = 0
            self._data_tail = b"\r\n"  # the DATA line's end starts the terminator
        if enabled:
            self._log_reply(reply)

    def _resync(self, reply: Reply, enabled: bool) -> None:
        self._synced = False
        if not enabled:
            return
        self._log_reply(reply)
        if self.at_boundary is not None and self.at_boundary():
            # Nothing unanswered, no data or chunk in progress: the reply alone sets the
            # state (RFC 4954 §4: 334 continues an AUTH exchange; RFC 5321 §4.1.1.4: 354
            # starts message data).
            self._synced = True
            self._unanswered = self._bdat_remaining = self._data_octets = 0
            self._in_auth = reply.code == 334
            self._in_data = reply.code == 354
            self._data_seen = 0
            self._data_tail = b"\r\n"

    def _log_reply(self, reply: Reply) -> None:
        last = len(reply.lines) - 1
        for index, line in enumerate(reply.lines):
            separator = "-" if index < last else " "
            text = f"{reply.code}{separator}{line}".rstrip(" ")
            self._debug("S", text.translate(_ESCAPES))

    # -- the parts of log_sent

    def _consume_line(self, data: bytes, position: int, enabled: bool) -> int:
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end + 1
        line = data[position:end]
        head = line[:5].upper()
        self._unanswered += 1
        if self._in_auth:
            text = _REDACTED if enabled else ""
        elif head == b"AUTH ":
            self._in_auth = True
            text = self._auth_line(line) if enabled else ""
        else:
            if head == b"BDAT ":
                self._bdat_remaining = self._bdat_size(line)
            text = _printable(line.rstrip(b"\r\n")) if enabled else ""
        if enabled:
            self._debug("C", text)
        return end

    @staticmethod
    def _auth_line(line: bytes) -> str:
        parts = line.rstrip(b"\r\n").split(None, 2)
        shown = _printable(b" ".join(parts[:2]))
        return f"{shown} {_REDACTED}" if len(parts) > 2 else shown

    @staticmethod
    def _bdat_size(line: bytes) -> int:
        parts = line.split()
        try:
            return max(int(parts[1]), 0)
        except (IndexError, ValueError):
            return 0

    def _consume_chunk(self, data: bytes, position: int, enabled: bool) -> int:
        taken = min(self._bdat_remaining, len(data) - position)
        self._bdat_remaining -= taken
        self._data_octets += taken
        if not self._bdat_remaining:
            if enabled:
                self._debug("C", f"<message data: {self._data_octets} octets>")
            self._data_octets = 0
        return position + taken

    def _consume_data(self, data: bytes, position: int, enabled: bool) -> int:
        self._data_seen += len(data) - position
        tail = self._data_tail
        # A terminator that straddles two writes starts in the tail (at most 4 octets).
        index = (tail + data[position : position + 4]).find(_TERMINATOR)
        if index < 0:
            found = data.find(_TERMINATOR, position)
            index = -1 if found < 0 else found - position + len(tail)
        if index < 0:
            self._data_octets += len(data) - position
            self._data_tail = (tail + data[max(position, len(data) - 4) :])[-4:]
            return len(data)
        end = position + index + len(_TERMINATOR) - len(tail)
        self._data_octets += end - position - 3  # everything before ".\r\n"
        self._in_data = False
        self._unanswered += 1  # the terminator is answered like a command
        if enabled:
            self._debug("C", f"<message data: {self._data_octets} octets>")
            self._debug("C", ".")
        self._data_octets = 0
        return end
