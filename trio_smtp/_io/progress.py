"""Progress of the message data: a user's ``progress(sent, total)`` callback, rate-bounded.

Theory of operation: the code that writes the message data (DATA in the transport, BDAT in
:mod:`trio_smtp._delivery.chunking`) holds a :class:`ProgressReporter`, or None when the
user passed no callback (then a write costs one ``is not None`` test per chunk, never per
line).  Before each chunk is written it calls :meth:`ProgressReporter.wrote` with the
message octets that chunk carries; before the write that carries the end of the data
(the terminator, or ``BDAT n LAST``), :meth:`ProgressReporter.finish`.

What is counted: the message's own octets, never the protocol's -- no dot-stuffing (RFC 5321
§4.5.2), no ``BDAT n`` lines, no terminator -- as read from the source (a stream, or the
message in memory; for BDAT an in-memory message is counted with its line ends normalised,
as it goes, and ``total`` is that size), so that ``sent`` ends exactly at ``total`` when the
size is known (the message in memory, a regular file).

Rate: a call at most every :data:`MIN_INTERVAL` seconds of Trio time (and at most once
per chunk, as chunks are what is written), plus the final call, which is always made:
the last call is ``(n, total)`` with ``n`` every octet of the message.  Reporting before
each write means a callback that raises stops the data before the end of it is written:
the send fails with that exception and the server cannot have accepted the message.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["MIN_INTERVAL", "ProgressCallback", "ProgressReporter", "progress_reporter"]

#: ``progress(sent, total)``: message octets handed to the connection so far, and the
#: message size when known (None for an async iterable).  Its return value is ignored.
ProgressCallback = Callable[[int, "int | None"], object]

#: At most one call per this many seconds (the final call excepted): ~10 per second.
MIN_INTERVAL = 0.1


class ProgressReporter:
    """Counts the octets written and calls the user's callback at a bounded rate."""

    __slots__ = ("_callback", "_next", "sent", "total")

    def __init__(self, callback: ProgressCallback, total: int | None) -> None:
        self._callback = callback
        #: The message size when known (the callback's second argument), else None.
        self.total = total
        #: Message octets reported as written so far.
        self.sent = 0
        self._next = -float("inf")

    def wrote(self, n: int) -> None:
        """``n`` more octets go now; call back unless the last call was too recent."""
        self.sent += n
        now = trio.current_time()
        if now >= self._next:
            self._next = now + MIN_INTERVAL
            self._callback(self.sent, self.total)

    def finish(self, n: int) -> None:
        """The last ``n`` octets go now (with the end of the data): always call back."""
        self.sent += n
        self._callback(self.sent, self.total)


def progress_reporter(
    callback: ProgressCallback | None, total: int | None
) -> ProgressReporter | None:
    """A reporter for one transfer, or None (no cost) when there is no callback."""
    return None if callback is None else ProgressReporter(callback, total)
