"""The client's states and its transition table.

Rule 1: everything that changes the client's protocol state lives in this file; the
connection asks the table, it never decides.  Rule 2: the table is data (a mapping from
``(state, event)`` to the next state), not if-chains; a miss is a LocalProtocolError when
the caller sent something the state does not allow (cf. h11/_state.py).  The docs build a
state diagram from :data:`TRANSITIONS`.
"""

from __future__ import annotations

import enum

__all__ = ["State", "TRANSITIONS"]


class State(enum.Enum):
    """Where the client's SMTP session stands."""

    #: Connected, waiting for the 220 greeting.
    CONNECTED = "CONNECTED"
    #: Greeted (or TLS just established): EHLO/HELO must come next.
    GREETED = "GREETED"
    #: EHLO/HELO accepted; no transaction open.
    READY = "READY"
    #: MAIL accepted (or pipelined): RCPT next.
    MAIL = "MAIL"
    #: At least one RCPT: more RCPT, DATA or BDAT next.
    RCPT = "RCPT"
    #: DATA got 354: message data, then the terminator.
    DATA = "DATA"
    #: Inside a BDAT sequence (RFC 3030).
    BDAT = "BDAT"
    #: QUIT answered or the peer closed.
    CLOSED = "CLOSED"
    #: A protocol error, failed write or cancellation: close the connection.
    ERROR = "ERROR"


#: (state, event name) -> next state.  Event names are command verbs sent
#: (``"send:MAIL"``) and reply outcomes received (``"reply:MAIL:ok"``, ``"reply:MAIL:fail"``).
TRANSITIONS: dict[tuple[State, str], State] = {}
