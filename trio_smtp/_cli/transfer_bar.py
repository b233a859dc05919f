"""``trio-smtp send`` of one message: a progress bar while a large message goes out.

Theory of operation: :class:`TransferBar` is the ``progress(sent, total)`` callback of
:meth:`SmtpClient.send <trio_smtp.SmtpClient.send>`.  It opens a tqdm bar (bytes, on
standard error) on its first call, and only when the message is large
(:data:`LARGE`, or any size with ``--progress``), tqdm is installed (``pip install
trio-smtp[progress]``) and standard error is a terminal (tqdm's ``disable=None``);
otherwise it stays quiet and the command works the same.  The bar is removed when the send
ends, before the outcome is printed.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["LARGE", "TransferBar"]

#: From this size on (octets) a message gets a bar without ``--progress``: below it a send
#: over any working link is too quick for a bar to tell anything.
LARGE = 1024 * 1024


class TransferBar:
    """``progress(sent, total)`` for one send: a tqdm bar for a large message, or nothing."""

    def __init__(self, *, always: bool = False, never: bool = False) -> None:
        self._always = always
        self._never = never
        self._bar: Any = None
        self._started = False

    def __call__(self, sent: int, total: int | None) -> None:
        if not self._started:
            self._started = True
            self._bar = self._open(total)
        if self._bar is not None:
            self._bar.update(sent - self._bar.n)

    def _open(self, total: int | None) -> Any:
        if self._never or not (self._always or total is None or total >= LARGE):
            return None
        try:
            tqdm = importlib.import_module("tqdm")
        except ImportError:
            return None
        return tqdm.tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            disable=None,  # no bar unless standard error is a terminal
            leave=False,
        )

    @property
    def shown(self) -> bool:
        """True when a bar was opened (tqdm installed, a terminal, a large message)."""
        return self._bar is not None and not self._bar.disable

    def close(self) -> None:
        """Remove the bar, if any (the send is over)."""
        if self._bar is not None:
            self._bar.close()
