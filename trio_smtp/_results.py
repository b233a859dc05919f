"""What a send produces: :class:`SendResult` and, for ``send_async``, :class:`SendCompleted`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .protocol import Reply

__all__ = ["SendCompleted", "SendResult"]

#: The type of a ``send_async`` call's ``user_token``.
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a send achieved."""

    #: Recipients the server accepted, in the order given.
    accepted: tuple[str, ...]
    #: Refused recipients -> the server's reply.
    rejected: Mapping[str, Reply] = field(default_factory=dict)
    #: The server's final reply (to the end of data); ``None`` for pickup-directory delivery.
    reply: Reply | None = None
    #: The Message-ID header of the message sent, if it had one.
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class SendCompleted(Generic[T]):
    """One per :meth:`SmtpClient.send_async <trio_smtp.SmtpClient.send_async>`, received
    from :attr:`SmtpClient.completed <trio_smtp.SmtpClient.completed>`.

    As .NET's ``AsyncCompletedEventArgs``: ``user_token`` is what was passed to
    ``send_async``; ``cancelled`` is True after ``send_async_cancel()`` (then ``error`` is
    None); ``error`` is the exception the send raised, if any; ``result`` is what was
    delivered -- set on success, and also when some recipients were refused (``error`` is then
    the :class:`~trio_smtp.SmtpFailedRecipientsError` and the others got the message).

    ``cancelled=True`` means the send was stopped in time: nothing was delivered.  A cancel
    that came after the end of the data was written (the server may already have accepted
    the message) is not reported as a cancel: ``error`` is then a
    :class:`~trio_smtp.SmtpDeliveryUnknownError` and ``cancelled`` is False -- also when the
    client's nursery was cancelled from outside.

    Generic in the token's type: annotate what you receive, ``event: SendCompleted[str] =
    await client.completed.receive()``, and ``event.user_token`` is a ``str`` without a
    cast.  (:attr:`SmtpClient.completed <trio_smtp.SmtpClient.completed>` itself carries
    ``SendCompleted[Any]``: one client may be given tokens of several types, and a client
    generic in its token type could not be built without naming it.)
    """

    user_token: T
    error: BaseException | None
    cancelled: bool
    result: SendResult | None
