"""Counters behind :meth:`SmtpClient.statistics() <trio_smtp.SmtpClient.statistics>`.

Trio's convention (``MemorySendChannel.statistics()``, ``Lock.statistics()``): a cheap,
synchronous snapshot in a frozen object.  The client bumps plain integers as sends finish
(a few additions per message); :func:`Counters.snapshot` copies them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import SmtpFailedRecipientsError
from .._results import SendResult

__all__ = ["ClientStatistics", "Counters"]


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """What an :class:`~trio_smtp.SmtpClient` has done so far (see its ``statistics()``).

    A message counts as sent when at least one recipient got it (pickup directory: when
    its file was written), even if others were refused; as failed when the send raised and
    nobody got it.  A cancelled send counts as neither.
    """

    #: Messages delivered to at least one recipient (or written to the pickup directory).
    messages_sent: int = 0
    #: Sends that raised an error without delivering to anyone.
    messages_failed: int = 0
    #: Recipients the server accepted, over every sent message.
    recipients_accepted: int = 0
    #: Recipients the server refused (partial or total refusals).
    recipients_rejected: int = 0
    #: Message data octets of sent messages (CRLF line ends, before dot-stuffing, as RFC
    #: 1870 SIZE counts them; a streamed body counts its size when that is known).
    bytes_sent: int = 0
    #: Connections (sessions) opened to the server, including reconnections.
    connections_opened: int = 0
    #: True while a :meth:`~trio_smtp.SmtpClient.send` or ``send_async`` is in progress.
    send_in_flight: bool = False


class Counters:
    """The mutable side: plain attributes, bumped by the client."""

    __slots__ = (
        "bytes_sent",
        "connections_opened",
        "messages_failed",
        "messages_sent",
        "recipients_accepted",
        "recipients_rejected",
    )

    def __init__(self) -> None:
        self.messages_sent = 0
        self.messages_failed = 0
        self.recipients_accepted = 0
        self.recipients_rejected = 0
        self.bytes_sent = 0
        self.connections_opened = 0

    def sent(self, result: SendResult, size: int | None) -> None:
        """A send returned ``result``."""
        self.messages_sent += 1
        self.recipients_accepted += len(result.accepted)
        self.recipients_rejected += len(result.rejected)
        self.bytes_sent += size or 0

    def failed(self, error: BaseException, size: int | None) -> None:
        """A send raised ``error`` (not Cancelled)."""
        if isinstance(error, SmtpFailedRecipientsError):
            if error.result is not None:  # delivered to the others
                self.sent(error.result, size)
                return
            self.recipients_rejected += len(error.failures)
        self.messages_failed += 1

    def snapshot(self, *, send_in_flight: bool) -> ClientStatistics:
        """A frozen copy of the counters."""
        return ClientStatistics(
            messages_sent=self.messages_sent,
            messages_failed=self.messages_failed,
            recipients_accepted=self.recipients_accepted,
            recipients_rejected=self.recipients_rejected,
            bytes_sent=self.bytes_sent,
            connections_opened=self.connections_opened,
            send_in_flight=send_in_flight,
        )
