"""One-call sending for scripts: :func:`send` opens a client, sends one message, closes it.

It is exactly ``async with SmtpClient(...) as client: return await client.send(...)``, so it
takes every option of :class:`~trio_smtp.SmtpClient` and of :meth:`SmtpClient.send
<trio_smtp.SmtpClient.send>` and raises the same errors (cf. aiosmtplib's ``send()``).  A
program that sends more than one message should keep one client open instead: each call
here pays for a new connection, TLS handshake and login.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from .._config import DeliveryMethod, Security, Timeouts
from .._credentials import Credentials
from .._io.transport import StreamFactory
from .._message.options import DeliveryNotification, DsnReturn
from .client import Message_, SendResult, SmtpClient

__all__ = ["send"]


async def send(
    message: Message_,
    url: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    security: Security | None = None,
    credentials: Credentials | None = None,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    timeouts: Timeouts | None = None,
    delivery_method: DeliveryMethod | None = None,
    pickup_directory: str | os.PathLike[str] | None = None,
    stream_factory: StreamFactory | None = None,
    unix_socket: str | os.PathLike[str] | None = None,
    source_address: str | None = None,
    sender: str | None = None,
    recipients: Sequence[str] | None = None,
    notify: DeliveryNotification | Mapping[str, DeliveryNotification] | None = None,
    ret: DsnReturn | None = None,
    envid: str | None = None,
    orcpt: Mapping[str, str] | None = None,
    requiretls: bool = False,
) -> SendResult:
    """Connect, send ``message``, say QUIT, and return the :class:`SendResult`.

    The server is a URL, as for :meth:`SmtpClient.from_url`
    (``await trio_smtp.send(msg, "smtps://user:pw@smtp.example.org")``), or the keyword
    arguments of :class:`SmtpClient` (``host=``, ``port=``, ``security=``,
    ``credentials=``, ...); keywords given with a URL override its parts.  ``sender``,
    ``recipients``, ``notify``, ``ret``, ``envid``, ``orcpt`` and ``requiretls`` are those of
    :meth:`SmtpClient.send`.

    Raises what the two raise: ``ValueError`` for a bad URL or option (before connecting),
    ``TypeError``/``ValueError`` for a bad message (also before connecting), and an
    :class:`~trio_smtp.SmtpError` subclass for every delivery failure.  Cancelled, it closes
    the connection and lets ``Cancelled`` propagate, with :meth:`SmtpClient.send`'s rule:
    once the end of the data is written, the message may have been delivered.
    """
    given: dict[str, Any] = {
        "host": host,
        "port": port,
        "security": security,
        "credentials": credentials,
        "ssl_context": ssl_context,
        "local_hostname": local_hostname,
        "timeouts": timeouts,
        "delivery_method": delivery_method,
        "pickup_directory": pickup_directory,
        "stream_factory": stream_factory,
        "unix_socket": unix_socket,
        "source_address": source_address,
    }
    # Only what the caller gave: None would override a part of the URL, and leaving an
    # option out gives SmtpClient's own default.
    options = {name: value for name, value in given.items() if value is not None}
    client = SmtpClient.from_url(url, **options) if url is not None else SmtpClient(**options)
    async with client:
        return await client.send(
            message,
            sender=sender,
            recipients=recipients,
            notify=notify,
            ret=ret,
            envid=envid,
            orcpt=orcpt,
            requiretls=requiretls,
        )
