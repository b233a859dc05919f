"""SmtpClient: the .NET ``SmtpClient.SendAsync`` model on Trio.  (Interface; see issue 4.)"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from types import TracebackType
from typing import Any

import trio

from ._config import DeliveryMethod, Security, Timeouts
from .protocol import Reply

__all__ = ["SendCompleted", "SendResult", "SmtpClient"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a send achieved."""

    #: Recipients the server accepted, in the order given.
    accepted: tuple[str, ...]
    #: Refused recipients -> the server's reply.
    rejected: Mapping[str, Reply] = field(default_factory=dict)
    #: The server's final reply (to the end of data, or the last BDAT).
    reply: Reply | None = None
    #: The Message-ID header of the message sent, if it had one.
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class SendCompleted:
    """One per :meth:`SmtpClient.send_async`, on :attr:`SmtpClient.completed`."""

    user_token: object
    error: BaseException | None
    cancelled: bool
    result: SendResult | None


class SmtpClient:
    """An SMTP client that owns a nursery (see DESIGN.md's public API contract)."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        security: Security = Security.STARTTLS,
        credentials: tuple[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        timeouts: Timeouts | None = None,
        delivery_method: DeliveryMethod = DeliveryMethod.NETWORK,
        pickup_directory: str | None = None,
    ) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> SmtpClient:
        raise NotImplementedError

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise NotImplementedError

    @property
    def completed(self) -> trio.MemoryReceiveChannel[SendCompleted]:
        raise NotImplementedError

    async def send(
        self,
        message: EmailMessage | bytes,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
    ) -> SendResult:
        raise NotImplementedError

    def send_async(
        self,
        message: EmailMessage | bytes,
        user_token: Any = None,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
    ) -> None:
        raise NotImplementedError

    def send_async_cancel(self) -> None:
        raise NotImplementedError
