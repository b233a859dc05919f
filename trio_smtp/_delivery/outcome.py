"""The rules that decide a message's outcome, each stated once.

Theory of operation: a transaction (RFC 5321 §3.3) ends in exactly one of

* **success** -- the reply to the end of data is 2yz (with some recipients refused, the
  message went to the others: SmtpFailedRecipientsError carrying the result);
* **not delivered** -- MAIL refused, every RCPT refused, DATA refused, a refusal of the end
  of data, or anything that broke the session *before* the write carrying the end of data
  (the terminator, or ``BDAT n LAST``) completed: its last octets never left, so the server
  cannot have the whole message;
* **maybe delivered** -- the write carrying the end of data completed and its reply was not
  read (a lost connection, a timeout, a reply we cannot parse, replies out of step): the
  server may have accepted the message (RFC 5321 §4.1.1.4).  Never retried.

And one reconnect rule: a *reused* connection found dead before anything complete could be
accepted (it closed while idle, said 421, or MAIL's reply was lost and no data had gone) is
:class:`ConnectionStaleError`, and the message goes again on a new connection.

The transaction engine (:mod:`trio_smtp._transaction`) and the batch scheduler
(:mod:`trio_smtp._batch`) apply these functions; neither restates them.
"""

from __future__ import annotations

from .._errors import (
    SmtpConnectError,
    SmtpDeliveryTimeoutError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpFailedRecipientError,
    SmtpFailedRecipientsError,
    SmtpProtocolError,
    SmtpResponseError,
    SmtpTimeoutError,
    SmtpTlsError,
)
from .._message.prepare import PreparedMessage
from .._results import SendResult
from ..protocol import Reply

__all__ = [
    "LOST_OR_GARBLED",
    "SENDER_REFUSED",
    "UNKNOWN",
    "ConnectionStaleError",
    "after_data",
    "check_envelope",
    "check_mail_not_closing",
    "check_not_closing",
    "delivery_unknown",
    "judge_envelope",
    "late_cancel",
    "maybe_delivered",
    "not_delivered",
    "sort_recipients",
    "stale_if_reused",
    "transaction_outcome",
    "unanswered",
]


class ConnectionStaleError(SmtpConnectError):
    """A reused connection turned out dead before the server accepted anything (it closed
    an idle session, or said 421): safe to retry once on a new connection."""


UNKNOWN = (
    "the connection was lost after the end of data and before the server's reply: "
    "the message may have been delivered"
)

#: Once the end of data was written, these leave the message possibly delivered: a lost
#: connection, or a reply we cannot parse (which is no refusal).  RFC 5321 §4.1.1.4.
LOST_OR_GARBLED = (SmtpConnectError, SmtpTlsError, SmtpProtocolError)


def delivery_unknown(error: SmtpError) -> SmtpDeliveryUnknownError:
    """What ``error`` becomes once the write carrying the end of data has completed: the
    server has the whole message (RFC 5321 §4.1.1.4), so a lost connection and a reply we
    cannot parse alike leave it possibly delivered.  ``error`` is kept as ``__cause__``."""
    if isinstance(error, SmtpProtocolError):
        text = (
            f"the reply to the end of data broke the protocol ({error}): "
            "the message may have been delivered"
        )
    else:
        text = UNKNOWN
    unknown = SmtpDeliveryUnknownError(text)
    unknown.__cause__ = error
    return unknown


def after_data(error: SmtpError, end_of_data_written: bool) -> SmtpError:
    """What a failure of the data phase means: once the write carrying the end of data
    completed, a lost connection or a garbled reply is "maybe delivered"; before, the
    server cannot have the whole message and ``error`` stands (not delivered)."""
    if end_of_data_written and isinstance(error, LOST_OR_GARBLED):
        return delivery_unknown(error)
    return error


def maybe_delivered(error: SmtpError) -> SmtpDeliveryUnknownError:
    """Any failure after the end of data was written, as "maybe delivered": already so, a
    timeout (SmtpDeliveryTimeoutError), a lost connection or a garbled reply."""
    if isinstance(error, SmtpDeliveryUnknownError):
        return error
    if isinstance(error, SmtpTimeoutError):
        unknown = SmtpDeliveryTimeoutError(f"{error}; the message may have been delivered")
        unknown.__cause__ = error
        return unknown
    return delivery_unknown(error)


def unanswered(error: SmtpError, mail_reply: Reply | None) -> SmtpError:
    """A group carrying ``BDAT n LAST`` (MAIL, RCPTs and the data in one write) was wholly
    written, and the session failed with ``error`` before its final reply was read: a lost
    connection, a timeout, a garbled reply or replies out of step -- for this message or,
    in a window of transactions (:mod:`trio_smtp._delivery.window`), for one ahead of it.

    RFC 2920 §3.1 lets the server process the whole group before it replies, so the
    message may have been delivered (RFC 5321 §4.1.1.4) -- unless MAIL's reply was read and
    refused (``mail_reply``): then the transaction never started and the message is not
    delivered.  Always a new exception with ``error`` as its cause (several messages of a
    window may fail with one cause)."""
    if mail_reply is not None and mail_reply.code // 100 != 2:
        outcome: SmtpError = SmtpResponseError(SENDER_REFUSED, reply=mail_reply, command="MAIL")
    elif isinstance(error, SmtpTimeoutError):
        text = str(error)
        if not isinstance(error, SmtpDeliveryUnknownError):
            text += "; the message may have been delivered"
        outcome = SmtpDeliveryTimeoutError(text)
    elif isinstance(error, SmtpDeliveryUnknownError):
        outcome = SmtpDeliveryUnknownError(str(error))
    else:
        return delivery_unknown(error)
    outcome.__cause__ = error
    return outcome


def not_delivered(error: SmtpError) -> SmtpConnectError:
    """A message whose envelope went (or was going) out in a batch, and whose data never
    did, when the session ended under it."""
    text = f"not delivered (the session ended before its data was sent): {error}"
    failure = SmtpConnectError(text, reply=error.reply)
    failure.__cause__ = error
    return failure


def late_cancel() -> SmtpDeliveryUnknownError:
    """What a cancel that came after the end of data is reported as."""
    return SmtpDeliveryUnknownError(
        "cancelled after the end of data: the message may have been delivered"
    )


def stale_if_reused(error: SmtpConnectError, reused: bool) -> SmtpConnectError:
    """MAIL's write or reply was lost with nothing complete written: on a reused
    connection the message goes again on a new one."""
    if not reused:
        return error
    stale = ConnectionStaleError(f"the reused connection was closed: {error}")
    stale.__cause__ = error
    return stale


def check_not_closing(reply: Reply) -> Reply:
    """RFC 5321 §3.8: 421 means the server is closing the channel; stop reading replies."""
    if reply.code == 421:
        raise SmtpResponseError("the server is closing the connection", reply=reply)
    return reply


def check_mail_not_closing(reply: Reply, reused: bool) -> Reply:
    """MAIL's reply: 421 on a reused connection is stale (nothing was accepted)."""
    if reply.code == 421 and reused:
        raise ConnectionStaleError("the reused connection was closed", reply=reply)
    return check_not_closing(reply)


def sort_recipients(
    recipients: tuple[str, ...], replies: list[Reply]
) -> tuple[list[str], dict[str, Reply]]:
    """The accepted recipients, and the refused ones with their replies (RFC 5321 §4.2.2:
    251 and 252 accept as much as 250)."""
    accepted: list[str] = []
    rejected: dict[str, Reply] = {}
    for recipient, reply in zip(recipients, replies, strict=False):
        if reply.code // 100 == 2:
            accepted.append(recipient)
        else:
            rejected[recipient] = reply
    return accepted, rejected


SENDER_REFUSED = "the server refused the sender (MAIL)"


def check_envelope(mail_reply: Reply, accepted: list[str], rejected: dict[str, Reply]) -> None:
    """Not delivered: MAIL refused, or every recipient refused (design rule 10)."""
    if mail_reply.code // 100 != 2:
        raise SmtpResponseError(SENDER_REFUSED, reply=mail_reply, command="MAIL")
    if not accepted:
        raise SmtpFailedRecipientsError(_failures(rejected))


def judge_envelope(
    recipients: tuple[str, ...],
    mail_reply: Reply,
    rcpt_replies: list[Reply],
    data_reply: Reply | None,
) -> tuple[list[str], dict[str, Reply], SmtpError | None]:
    """What the envelope's replies decide: the accepted and the refused recipients, and --
    when the data must not go -- the error the message ends with (not delivered): MAIL
    refused, every RCPT refused (:func:`check_envelope`), or DATA refused.  ``data_reply``
    is None when DATA was not sent (BDAT, or nobody to send to).  A 354 that comes with an
    error is answered with the terminator alone by the caller (RFC 2920 §3.1)."""
    accepted, rejected = sort_recipients(recipients, rcpt_replies)
    try:
        check_envelope(mail_reply, accepted, rejected)
    except SmtpError as exc:
        return accepted, rejected, exc
    if data_reply is not None and data_reply.code != 354:
        refused = SmtpResponseError("the server refused DATA", reply=data_reply, command="DATA")
        return accepted, rejected, refused
    return accepted, rejected, None


def transaction_outcome(
    prepared: PreparedMessage, final: Reply, accepted: list[str], rejected: dict[str, Reply]
) -> SendResult:
    """The reply to the end of data decides: 2yz success (SmtpFailedRecipientsError with
    the result when some recipients were refused), anything else not delivered."""
    if final.code // 100 != 2:
        raise SmtpResponseError(
            "the server refused the message", reply=final, command="end of data"
        )
    result = SendResult(tuple(accepted), rejected, final, prepared.message_id)
    if rejected:
        raise SmtpFailedRecipientsError(_failures(rejected), result)
    return result


def _failures(rejected: dict[str, Reply]) -> list[SmtpFailedRecipientError]:
    return [SmtpFailedRecipientError(r, reply) for r, reply in rejected.items()]
