"""SmtpClient: the .NET ``SmtpClient.SendAsync`` model on Trio.

Theory of operation: the client is an async context manager that owns a nursery.  ``send``
runs in the caller's task; ``send_async`` validates synchronously, then starts the same send
as a task in the client's nursery, inside its own cancel scope (which ``send_async_cancel``
cancels), and that task always ends by putting exactly one :class:`SendCompleted` on the
``completed`` channel.  One send is in flight at a time (``trio.BusyResourceError``
otherwise), so one connection is enough: it is opened on the first send and reused while it
is idle and healthy (see :attr:`Transport.reusable <trio_smtp._io.transport.Transport>`).

Only one exception can ever escape: the send task catches everything but ``Cancelled`` and
hands it over in its event, and the user's own code never runs inside the client's nursery
(``__aexit__`` closes the nursery with no exception of its own), so no ExceptionGroup from
the nursery reaches the user.
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from email.message import EmailMessage
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import trio

from .._config import DeliveryMethod, Security, Timeouts
from .._credentials import Credentials
from .._delivery.stats import ClientStatistics as ClientStatistics
from .._delivery.stats import Counters
from .._errors import SmtpFailedRecipientsError
from .._io.progress import ProgressCallback
from .._io.transport import StreamFactory
from .._io.url import parse_smtp_url
from .._message.dkim import DkimSigner, choose_signer, sign_prepared
from .._message.options import DeliveryNotification, DsnReturn
from .._message.prepare import PreparedMessage, prepare_message, with_delivery_options
from .._message.sources import SupportsAsyncRead, SupportsRead
from .._results import SendCompleted as SendCompleted
from .._results import SendResult as SendResult
from .connection_slot import Connection, send_completed
from .settings import session_config

if TYPE_CHECKING:  # loaded by the first batch: SmtpClient alone does not pay for them
    from .._delivery.batch_items import BatchItem
    from .streamed import Emit, OutcomeStream

__all__ = ["ClientStatistics", "SendCompleted", "SendResult", "SmtpClient"]

#: What ``send`` takes: a message, its bytes, or a streamed body (binary file object with
#: ``read(n)``, a trio async file, an ``os.PathLike``, or an async iterable of bytes).
Message_ = (
    EmailMessage
    | bytes
    | os.PathLike[str]
    | AsyncIterable[bytes]
    | SupportsRead
    | SupportsAsyncRead
)


class SmtpClient:
    """An SMTP client that owns a nursery; see the quick start for examples.

    ``SmtpClient(host, port=None, *, security=None, credentials=None, ...)`` raises
    ``ValueError`` at construction for an empty ``host`` with network delivery, a port
    outside 1-65535, an invalid ``local_hostname`` (not a domain or address literal, or with
    CR/LF), or a ``security`` other than NONE given with a pickup directory.

    ``security`` left out (or ``None``) means :attr:`Security.STARTTLS` (required) for the
    network, and :attr:`Security.NONE` for a pickup directory or a Unix socket.  ``port``
    defaults to 465 for implicit TLS, 587 for STARTTLS and 25 otherwise.

    ``credentials`` is ``(user, password)`` -- the client uses the strongest mechanism the
    server offers: SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN --, or
    :class:`~trio_smtp.OAuth2` (a token or an async callable returning one; OAUTHBEARER,
    then XOAUTH2), or a :class:`SASL mechanism <trio_smtp.sasl.Mechanism>` object (or a
    callable returning one) to force a mechanism.  Credentials never go without TLS except
    to a loopback address or a Unix socket.

    ``unix_socket`` connects to a Unix-domain socket path instead of TCP (``host`` is then
    optional: it is the name checked on the certificate if TLS is asked for).
    ``stream_factory`` replaces the connection with any ``trio.abc.Stream`` (``host`` still
    names the server for TLS).  ``local_hostname`` is the EHLO name; by default the
    machine's FQDN, looked up in a worker thread (never blocking the event loop), or the
    connection's address literal.

    Leaving ``async with`` normally waits for a ``send_async`` in flight, then says QUIT;
    leaving it with an exception first cancels that send, as a nursery cancels its children
    when its body raises (its :class:`SendCompleted` is still delivered).  ``repr()`` shows
    the server, the security and the state (``new``, ``idle``, ``connected``, ``sending``,
    ``closing``, ``closed``).

    ``source_address`` is the local IP address to connect from (``"192.0.2.10"``; the port
    is the system's choice), for a machine with several addresses whose relay expects mail
    from one of them; TCP only (``ValueError`` with a Unix socket, a stream factory, a proxy
    or a pickup directory, or for anything but an IP address).

    ``proxy`` connects through a SOCKS or HTTP CONNECT proxy: ``"socks5://user:pw@host:1080"``
    (``socks5h://`` lets the proxy resolve ``host``; also ``socks4://``, ``socks4a://``,
    ``http://host:port``).  SOCKS needs the ``proxy`` extra (``pip install
    'trio-smtp[proxy]'``; without it the constructor raises ``ImportError``).  TLS runs end to
    end through the tunnel and checks ``host``'s certificate; credentials for the SMTP server
    are never sent in clear through a proxy, even a local one.  See :doc:`/howto/proxy`.

    ``dkim`` is a :class:`~trio_smtp.DkimSigner`: every in-memory message is DKIM-signed
    over exactly the octets sent (after Bcc is removed and line ends are made CRLF); a
    streamed body is then refused with ``ValueError`` unless sent with ``dkim=False``.  See
    :doc:`/howto/dkim`.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        security: Security | None = None,
        credentials: Credentials | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        timeouts: Timeouts | None = None,
        delivery_method: DeliveryMethod = DeliveryMethod.NETWORK,
        pickup_directory: str | os.PathLike[str] | None = None,
        stream_factory: StreamFactory | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        proxy: str | None = None,
        dkim: DkimSigner | None = None,
        source_address: str | None = None,
    ) -> None:
        self._dkim = choose_signer(None, dkim)
        self._config = session_config(
            host,
            port,
            security=security,
            credentials=credentials,
            ssl_context=ssl_context,
            local_hostname=local_hostname,
            timeouts=timeouts,
            delivery_method=delivery_method,
            pickup_directory=pickup_directory,
            stream_factory=stream_factory,
            unix_socket=unix_socket,
            proxy=proxy,
            source_address=source_address,
        )
        self._counters = Counters()
        self._delivery_method = delivery_method
        self._pickup_directory = pickup_directory
        pickup = delivery_method is DeliveryMethod.PICKUP_DIRECTORY
        #: The client's one connection: opened lazily, reused, replaced (see Connection).
        self._slot = Connection(
            self._config,
            self._counters,
            pickup_directory=pickup_directory if pickup else None,
        )
        self._send_channel, self._completed = trio.open_memory_channel[SendCompleted[Any]](math.inf)
        self._state = "new"  # -> "open" -> "closing" -> "closed"
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None
        self._busy = False
        self._idle = trio.Event()
        self._send_scope: trio.CancelScope | None = None

    def __repr__(self) -> str:
        config = self._config
        if self._delivery_method is DeliveryMethod.PICKUP_DIRECTORY:
            where = f"pickup_directory={os.fspath(self._pickup_directory or '')!r}"
        elif config.unix_socket is not None:
            where = f"unix_socket={config.unix_socket!r}"
        else:
            where = f"host={config.host!r} port={config.port}"
        return (
            f"<SmtpClient {where} security={config.security.name} state={self._describe_state()}>"
        )

    def _describe_state(self) -> str:
        """``new`` (not entered yet), ``idle`` (no connection), ``connected``, ``sending``,
        ``closing`` or ``closed``."""
        if self._state != "open":
            return self._state
        if self._busy:
            return "sending"
        return "connected" if self._slot.connected else "idle"

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SmtpClient:
        """``smtps://user:pw@host[:port]`` (implicit TLS), ``smtp://...`` (STARTTLS required,
        ``?tls=opportunistic|none``), ``smtp+unix:///path/to/socket`` (a Unix socket, no
        TLS), ``pickup:///path/to/dir`` (``.eml`` files into a pickup directory); user and
        password are percent-decoded.  ``?proxy=URL`` connects through a proxy (``proxy=``);
        that URL is percent-encoded as a whole (``urllib.parse.quote(proxy_url, safe="")``).
        Keyword arguments add to or override
        the URL's.  Every problem with the URL is a ``ValueError`` that never quotes the
        password."""
        return cls(**{**parse_smtp_url(url), **kwargs})

    def statistics(self) -> ClientStatistics:
        """A snapshot of what this client has done: messages sent and failed, recipients
        accepted and refused, message octets, connections opened, and whether a send is in
        flight (Trio's ``statistics()`` convention: cheap, synchronous)."""
        return self._counters.snapshot(send_in_flight=self._busy)

    # -- lifetime ----------------------------------------------------------------------------

    async def __aenter__(self) -> SmtpClient:
        if self._state != "new":
            raise RuntimeError("an SmtpClient can be entered only once")
        manager = trio.open_nursery()
        self._nursery = await manager.__aenter__()
        self._nursery_manager = manager
        self._state = "open"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leaving normally: wait for a send in flight (cancelling nothing), then QUIT
        (shielded, short).  Leaving with an exception: first cancel the ``send_async`` in
        flight, as a nursery cancels its children when its body raises, so the exception
        reaches the caller without waiting for the server; that send still reports its one
        outcome on :attr:`completed` (``cancelled=True``, or ``SmtpDeliveryUnknownError``
        when its end of data was already written)."""
        self._state = "closing"
        assert self._nursery_manager is not None
        if exc is not None:
            self.send_async_cancel()
        try:
            while self._busy:
                self._idle = trio.Event()  # set by _release (one per wait, not per send)
                await self._idle.wait()
        finally:
            try:
                # No exception of ours goes in: the user's exception (if any) propagates
                # unchanged and is never wrapped in an ExceptionGroup.
                await self._nursery_manager.__aexit__(None, None, None)
            finally:
                self._state = "closed"
                self._send_channel.close()
                await self._slot.aclose()

    @property
    def completed(self) -> trio.MemoryReceiveChannel[SendCompleted[Any]]:
        """One :class:`SendCompleted` per :meth:`send_async`, never dropped.

        The buffer is unbounded (``math.inf``) on purpose: a send task must never block on
        reporting, or a caller that reads events only after ``async with`` would deadlock, and
        an event must never be dropped.  Its size is bounded by the caller's own
        ``send_async`` calls (one small object each).  The channel ends (``EndOfChannel``)
        once the client is closed and every event has been received.
        """
        return self._completed

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self,
        message: Message_,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
        notify: DeliveryNotification | Mapping[str, DeliveryNotification] | None = None,
        ret: DsnReturn | None = None,
        envid: str | None = None,
        orcpt: Mapping[str, str] | None = None,
        requiretls: bool = False,
        dkim: DkimSigner | Literal[False] | None = None,
        progress: ProgressCallback | None = None,
    ) -> SendResult:
        """Send ``message`` and wait for the outcome.

        ``message`` is an :class:`~email.message.EmailMessage`, ``bytes``, or -- streamed
        in chunks with bounded memory, and needing ``sender`` and ``recipients`` -- a binary
        file object, an ``os.PathLike`` path (a ``str`` is refused: pass a
        :class:`pathlib.Path`) or an async iterable of bytes.  SIZE is declared when the size
        is known (a regular file), and BODY=8BITMIME whenever the server offers it (a
        streamed body's kind is unknown until read).  A NUL octet cannot go as text: it is
        refused (:class:`~trio_smtp.SmtpError`) unless the server offers CHUNKING and
        BINARYMIME (in-memory messages only).

        DSN (RFC 3461): ``notify`` (one :class:`DeliveryNotification` for every recipient,
        or a mapping recipient -> flags), ``ret`` (:class:`DsnReturn`), ``envid``, and
        ``orcpt`` (recipient -> original address).  ``requiretls=True`` (RFC 8689) asks every
        hop to use TLS.  A server without DSN, or REQUIRETLS without TLS or without the
        extension, is refused before MAIL (:class:`~trio_smtp.SmtpError`,
        :class:`~trio_smtp.SmtpTlsError`): nothing is silently dropped.

        ``dkim``: a :class:`~trio_smtp.DkimSigner` for this message, ``False`` to send it
        unsigned, or None (the default) for the client's ``dkim``.  Signing happens here,
        before anything is written (``ValueError`` for a streamed body).

        ``progress``: a plain callable ``progress(sent, total)``, called in the sending task
        as the message data goes out: ``sent`` counts the message's octets (never the
        protocol's: no dot-stuffing, no terminator), ``total`` is its size when known (in
        memory, a regular file), else None (an async iterable).  At most about ten calls a
        second and one per 256 KiB chunk, plus a final call ``(size, total)`` just before
        the end of the data is written -- a small message gets only that one.  It must not
        block (it runs between writes).  An exception it raises fails the send, as it is,
        before the end of the data: nothing is delivered and the connection is closed.  See
        :doc:`howto/large`.

        Raises ``TypeError``/``ValueError`` for bad input, ``trio.BusyResourceError`` while
        another send is in flight, ``trio.ClosedResourceError`` after the client is closed,
        and an :class:`~trio_smtp.SmtpError` subclass for every delivery failure.

        Cancelled (by the caller's cancel scope), it closes the connection and lets
        ``Cancelled`` propagate, alone (never inside an exception group), as Trio requires.
        Before the end of the data is written, nothing is delivered; after it (while the
        final reply is awaited) the server may have accepted the message: a cancellation
        cannot take it back.  A cancel that arrives while the connection is being closed
        after the outcome is known does not replace it: the outcome is returned or raised,
        and ``Cancelled`` comes at the caller's next checkpoint.
        """
        self._check_open()
        prepared = prepare_outgoing(
            message, sender, recipients, notify, ret, envid, orcpt, requiretls
        )
        prepared = signed(prepared, choose_signer(self._dkim, dkim)).with_progress(progress)
        self._claim()
        try:
            return await self._slot.deliver(prepared)
        finally:
            self._release()

    async def send_many(
        self, messages: Iterable[BatchItem] | AsyncIterable[BatchItem]
    ) -> list[SendResult | Exception]:
        """Send many in-memory messages over one connection; one outcome per message.

        ``messages`` is an iterable or async iterable of :class:`~email.message.EmailMessage`,
        ``bytes`` in an :class:`OutgoingMessage` (which carries its own ``sender`` and
        ``recipients``, and the DSN/REQUIRETLS options :meth:`send` takes: ``notify``,
        ``ret``, ``envid``, ``orcpt``, ``requiretls``), or ``OutgoingMessage`` wrapping
        either.  Items are read and validated one at a time, just before they are sent.

        Returns a list in the order given: for each message its :class:`SendResult`, or
        the exception :meth:`send` would have raised for it (``TypeError``/``ValueError``
        for an invalid item -- nothing of it is written --, an
        :class:`~trio_smtp.SmtpError` subclass for a refusal or a failure;
        :class:`~trio_smtp.SmtpFailedRecipientsError` with ``.result`` when some
        recipients got it).  One message's failure never stops the others.

        With PIPELINING (RFC 2920 §3.1) the data and terminator of one message and the
        envelope of the next go in one write: one round trip per message.  If the
        connection breaks, the message whose terminator was written and whose reply was
        not read is :class:`~trio_smtp.SmtpDeliveryUnknownError` (it may have been
        delivered: do not resend it blindly), the next one (whose envelope went out, never
        its data) is :class:`~trio_smtp.SmtpConnectError` saying it was not delivered, and
        a new connection is opened for the rest; when a connection cannot be opened, every
        remaining message gets that error.  With CHUNKING as well, up to 16 small messages
        are in flight at once (each in one write, see :doc:`howto/bulk`): when the
        connection breaks, every one whose write completed and whose reply was not read is
        :class:`~trio_smtp.SmtpDeliveryUnknownError`.

        Raises (before anything is sent) ``TypeError`` when ``messages`` is a single
        message or not iterable, ``trio.BusyResourceError`` while another send is in
        flight, ``trio.ClosedResourceError`` after the client is closed.  Cancelled, it
        closes the connection and raises ``Cancelled``: the messages before the one in
        flight may have been delivered, and their outcomes are lost -- send in smaller
        batches if you need to know.
        """
        from .._delivery.batch_items import check_batch_source

        self._check_open()
        items = check_batch_source(messages)
        self._claim()
        try:
            return await self._slot.send_many(items, dkim=self._dkim)
        finally:
            self._release()

    @asynccontextmanager
    async def send_many_as_completed(
        self, messages: Iterable[BatchItem] | AsyncIterable[BatchItem]
    ) -> AsyncIterator[OutcomeStream]:
        """:meth:`send_many`, handing each outcome over the moment it is known.

        ``async with client.send_many_as_completed(items) as outcomes:`` then ``async for
        done in outcomes:`` gives one :class:`~trio_smtp.BatchOutcome` per item (``index``,
        ``item``, ``outcome``: what :meth:`send_many` would put at that index), in
        completion order.  The batch runs in the client's nursery while the block runs, so
        a reader can show progress, write a report as it goes, and -- cancelled -- lose
        nothing already known: the outcomes decided before the cancel are still on the
        stream (:meth:`~trio_smtp.OutcomeStream.receive_nowait`), and
        :attr:`~trio_smtp.OutcomeStream.unfinished` lists the items read that have none
        (the one in flight may have been delivered).

        Leaving the block normally waits for the batch to end; leaving it with an exception
        (a cancel included) cancels the batch first.  Raises on entering what
        :meth:`send_many` raises before anything is sent.  An exception raised by the
        iterable itself ends the batch: the messages already read finish and report their
        outcomes, then it is raised by the iteration.
        """
        from .._delivery.batch_items import Outcomes, check_batch_source
        from .streamed import RecordedItems, stream_outcomes

        self._check_open()
        items = RecordedItems(check_batch_source(messages))
        self._claim()
        try:

            async def run(emit: Emit) -> None:
                await self._slot.send_many(
                    items, Outcomes(self._counters, on_set=emit), dkim=self._dkim
                )

            assert self._nursery is not None
            async with stream_outcomes(self._nursery, items, run) as outcomes:
                yield outcomes
        finally:
            self._release()

    def send_async(
        self,
        message: Message_,
        user_token: Any = None,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
        notify: DeliveryNotification | Mapping[str, DeliveryNotification] | None = None,
        ret: DsnReturn | None = None,
        envid: str | None = None,
        orcpt: Mapping[str, str] | None = None,
        requiretls: bool = False,
        dkim: DkimSigner | Literal[False] | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Validate now, send in the client's nursery, return at once.

        Takes what :meth:`send` takes.  The outcome arrives as one :class:`SendCompleted` on
        :attr:`completed`.  Raises synchronously what :meth:`send` raises before any I/O.  A
        file object must stay open (and unread by anyone else) until the completion event.
        """
        self._check_open()
        prepared = prepare_outgoing(
            message, sender, recipients, notify, ret, envid, orcpt, requiretls
        )
        prepared = signed(prepared, choose_signer(self._dkim, dkim)).with_progress(progress)
        self._claim()
        scope = trio.CancelScope()
        self._send_scope = scope
        assert self._nursery is not None
        self._nursery.start_soon(self._run_send_async, prepared, user_token, scope)

    def send_async_cancel(self) -> None:
        """Cancel the ``send_async`` in flight, if any: its event has ``cancelled=True``.

        The connection is closed (a half-spoken session is never reused); cancelled during
        the message data, the terminator is never sent, so the server discards the message.

        A cancel that comes too late -- once the end of the data (the terminator, or ``BDAT
        n LAST``) has been written, whatever the body (in memory, a file, an async iterable)
        -- cannot stop the delivery: the server may have accepted the message.  The event
        then never claims a cancel (``cancelled=False``): it carries the send's own outcome
        when it has one (the result, or the SmtpDeliveryUnknownError it was already failing
        with), else -- the cancel cut the wait for the reply, or its cleanup --
        ``SendCompleted(user_token, SmtpDeliveryUnknownError(...), False, None)``.
        With CHUNKING and PIPELINING a small message's ``BDAT n LAST`` goes in the same write
        as MAIL, so from that write on a cancel is already too late.
        """
        if self._send_scope is not None:
            self._send_scope.cancel()

    async def _run_send_async(
        self, prepared: PreparedMessage, user_token: object, scope: trio.CancelScope
    ) -> None:
        error: BaseException | None = None
        result: SendResult | None = None
        self._slot.begin_send()
        try:
            with scope:
                result = await self._slot.deliver(prepared)
        except SmtpFailedRecipientsError as exc:
            error, result = exc, exc.result
        except BaseException as exc:
            # An Exception is the send's failure.  Anything else is a cancel from outside
            # (the client torn down under the caller's cancellation): the event is still
            # sent, and Cancelled propagates to its scope.
            error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            event = self._completion(user_token, scope, result, error, prepared.size)
            self._send_scope = None
            self._release()
            self._send_channel.send_nowait(event)

    def _completion(
        self,
        user_token: object,
        scope: trio.CancelScope,
        result: SendResult | None,
        error: BaseException | None,
        size: int | None,
    ) -> SendCompleted[Any]:
        """This send's event, decided where SmtpPool's are (see :func:`send_completed`):
        once the connection's end of data was written, no cancel makes it ``cancelled``."""
        return send_completed(
            user_token,
            scope,
            result,
            error,
            end_of_data_written=self._slot.end_of_data_written,
            counters=self._counters,
            size=size,
        )

    # -- state checks ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state in ("closing", "closed"):
            raise trio.ClosedResourceError("this SmtpClient is closed")
        if self._state == "new":
            raise RuntimeError("use the client as 'async with SmtpClient(...) as client:'")

    def _claim(self) -> None:
        if self._busy:
            raise trio.BusyResourceError("another send is in progress on this SmtpClient")
        self._busy = True

    def _release(self) -> None:
        self._busy = False
        self._idle.set()


def prepare_outgoing(
    message: object,
    sender: str | None,
    recipients: Sequence[str] | None,
    notify: DeliveryNotification | Mapping[str, DeliveryNotification] | None,
    ret: DsnReturn | None,
    envid: str | None,
    orcpt: Mapping[str, str] | None,
    requiretls: bool,
) -> PreparedMessage:
    prepared = prepare_message(message, sender, recipients)
    return with_delivery_options(
        prepared, notify=notify, ret=ret, envid=envid, orcpt=orcpt, requiretls=requiretls
    )


def signed(prepared: PreparedMessage, signer: DkimSigner | None) -> PreparedMessage:
    # After prepare_outgoing: the signature covers the data as serialised (Bcc removed).
    return prepared if signer is None else sign_prepared(prepared, signer)
