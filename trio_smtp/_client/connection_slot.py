"""One connection to the server, as both SmtpClient and SmtpPool use it.

Theory of operation: a :class:`Connection` is a slot that holds at most one session.  It is
opened lazily by the first send, reused while it is idle and healthy, and replaced when it
is broken, or was closed or spoken on by the server while idle (design rules 11 and 12: a
kept connection is looked at before each send, see :meth:`Transport.check_idle
<trio_smtp._io.transport.Transport.check_idle>`; a 421, an idle timeout, a stray line all
mean a new one).  A reused connection found stale before
its MAIL was answered raises :class:`~trio_smtp._delivery.outcome.ConnectionStaleError`, and the
message goes again on a fresh one: nothing of it was accepted (RFC 5321 §4.1.1.4).  Nothing
is ever retried after the end of data was written (``SmtpDeliveryUnknownError``).  Closing
says QUIT when the session is idle, shielded, with a short deadline (design rule 9).

The slot contains no SMTP transaction logic: it drives :func:`open_session`,
:func:`deliver` and :func:`send_batch`, and counts what they did in the owner's
:class:`~trio_smtp._delivery.stats.Counters`.

:func:`send_completed` is the one place a ``send_async`` outcome is decided (design rule
10), for SmtpClient and SmtpPool alike; it is given the slot's
:attr:`Connection.end_of_data_written`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio

from .._delivery.outcome import ConnectionStaleError, late_cancel
from .._delivery.session import SessionConfig, open_session
from .._delivery.stats import Counters
from .._delivery.transaction import EnvelopeCommands, deliver
from .._io.transport import Transport
from .._message.dkim import DkimSigner

if TYPE_CHECKING:  # the batch modules load with the first batch (import cost: design.rst)
    from .._delivery.batch_items import Outcome, Outcomes
from .._message.prepare import PreparedMessage
from .._results import SendCompleted, SendResult

__all__ = ["Connection", "close_body", "send_completed"]


class Connection:
    """A slot for one session to the server (or a pickup directory: no session at all).

    ``counters`` are the owner's statistics (shared by every slot of a pool).
    """

    def __init__(
        self,
        config: SessionConfig,
        counters: Counters,
        *,
        pickup_directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self._config = config
        self._counters = counters
        self._pickup_directory = pickup_directory
        self._transport: Transport | None = None
        #: The connection the current send uses (its last, after a stale one was replaced):
        #: :attr:`end_of_data_written` reads it.  Reset by :meth:`begin_send`.
        self._send_transport: Transport | None = None
        #: The last message's MAIL and RCPTs, for the next one to the same people.
        self._commands = EnvelopeCommands()

    @property
    def connected(self) -> bool:
        """True while a session is open (it may still turn out stale on its next use)."""
        return self._transport is not None

    @property
    def messages(self) -> int:
        """Transactions completed on the current session (0 when none is open)."""
        transport = self._transport
        return 0 if transport is None else transport.transactions

    def begin_send(self) -> None:
        """A new send starts (called before anything can cancel it): from now on
        :attr:`end_of_data_written` speaks of its transactions only, not of the last send's."""
        self._send_transport = None

    @property
    def end_of_data_written(self) -> bool:
        """Whether the current send wrote its end of data (the terminator, or ``BDAT n
        LAST``) on its connection: from then on the server may have the whole message
        (see ``Transport.end_of_data_written``)."""
        transport = self._send_transport
        return transport is not None and transport.end_of_data_written

    @property
    def ready(self) -> bool:
        """True when a send needs no new session: one is open, or this is a pickup slot."""
        return self._pickup_directory is not None or self._transport is not None

    async def deliver(self, prepared: PreparedMessage) -> SendResult:
        """Send one message as ``SmtpClient.send`` does, counted in the statistics (a
        cancelled send counts as nothing)."""
        try:
            result = await self.deliver_uncounted(prepared)
        except Exception as exc:
            self._counters.failed(exc, prepared.size)
            raise
        finally:
            await close_body(prepared)
        self._counters.sent(result, prepared.size)
        return result

    async def connect(self) -> None:
        """Open the session now unless a reusable one is open (errors as ``send``'s)."""
        if self._pickup_directory is None:
            await self._open()

    async def send_many(
        self,
        items: AsyncIterator[object],
        outcomes: Outcomes | None = None,
        *,
        dkim: DkimSigner | None = None,
    ) -> list[Outcome]:
        """Send a batch over this slot's session (see :func:`send_batch`); ``dkim`` signs
        every item that does not choose its own signer."""
        pickup = self._pickup_directory is not None
        from .._delivery.batch import send_batch

        return await send_batch(
            items,
            self._counters,
            self.deliver_uncounted,
            None if pickup else self._connection,
            functools.partial(self._drop_transport, polite=False),
            outcomes,
            dkim=dkim,
            commands=self._commands,
        )

    async def deliver_uncounted(self, prepared: PreparedMessage) -> SendResult:
        """One attempt at ``prepared``, not counted and leaving its body open (the pool
        counts a message once, whatever the attempts, and closes its body at the end)."""
        if self._pickup_directory is not None:
            return await self._deliver_to_pickup(prepared)
        while True:
            kept = self._transport
            transport = await self._connection()
            # Where the event decision (send_completed) learns whether the end of data
            # went out.
            transport.begin_transaction()
            self._send_transport = transport
            try:
                # A kept connection (a pool's new one too: opened by its lease) was looked
                # at just now (check_idle), with no await since.
                return await deliver(
                    transport, prepared, looked=transport is kept, commands=self._commands
                )
            except ConnectionStaleError:
                continue  # only on a reused connection: the next one is fresh
            finally:
                if not transport.reusable:
                    await self._drop_transport(polite=False)

    async def _deliver_to_pickup(self, prepared: PreparedMessage) -> SendResult:
        from .._delivery.pickup import deliver_to_pickup  # only pickup delivery pays its import

        assert self._pickup_directory is not None
        envelope = prepared.envelope
        data = prepared.data
        if prepared.body is not None:  # the pickup writer takes bytes: read the body whole
            await prepared.body.open()
            data = b"".join([chunk async for chunk in prepared.body.chunks()])
        await deliver_to_pickup(self._pickup_directory, envelope.sender, envelope.recipients, data)
        return SendResult(envelope.recipients, message_id=prepared.message_id)

    async def _connection(self) -> Transport:
        """The session for the next send or batch (reused from the second time on)."""
        transport = await self._open()
        transport.hand_out()
        return transport

    async def _open(self) -> Transport:
        # design rules 11 and 12: a kept connection that the server closed (with or
        # without 421) or spoke on while idle is replaced, whatever the last send did.
        transport = self._transport
        if transport is None or not await transport.check_idle():
            await self._drop_transport(polite=False)
            self._counters.connections_opened += 1
            transport = self._transport = await open_session(self._config)
        return transport

    async def _drop_transport(self, *, polite: bool) -> None:
        transport, self._transport = self._transport, None
        if transport is None:
            return
        if polite:
            await transport.quit()
        else:
            await transport.aclose()

    async def aclose(self) -> None:
        """QUIT if the session is idle, then close (shielded, short deadline); safe twice."""
        await self._drop_transport(polite=True)


async def close_body(prepared: PreparedMessage) -> None:
    """Close a streamed body once its send is over."""
    if prepared.body is not None:
        # A file opened from a path.  Shielded, short (design rule 9): a cancel
        # landing here must not turn a delivered result into "cancelled".
        with trio.move_on_after(_CLEANUP_SECONDS, shield=True):
            await prepared.body.aclose()


#: design rule 9's short deadline for the one shielded cleanup that no Timeouts field
#: governs, because it waits on no server: closing a file the client opened from a path
#: once the send is over.  Past it the close is left to its worker thread.
_CLEANUP_SECONDS = 5.0


def send_completed(
    user_token: object,
    scope: trio.CancelScope,
    result: SendResult | None,
    error: BaseException | None,
    *,
    end_of_data_written: bool,
    counters: Counters,
    size: int | None,
) -> SendCompleted[Any]:
    """The one place a ``send_async`` outcome is decided (design rule 10), for
    :class:`~trio_smtp.SmtpClient` and :class:`~trio_smtp.SmtpPool` alike.

    ``error`` is what the send raised: an Exception, a cancel from outside, or None
    (``result`` came back, or ``scope`` caught its own cancel).  Once the end of the data
    was written (``end_of_data_written``, from :attr:`Connection.end_of_data_written`: the
    server may have the whole message), no cancel makes the event ``cancelled``: it carries
    the result, the send's own error, or -- when a cancel cut the wait for the reply -- an
    SmtpDeliveryUnknownError, counted as a failure in ``counters``.  Before that, a cancel
    means nothing was delivered."""
    failure = error if isinstance(error, Exception) else None
    if result is not None and failure is None:
        return SendCompleted(user_token, None, False, result)
    if end_of_data_written:
        if failure is None:  # a cancel cut the wait for the reply to the end of data
            failure = late_cancel()
            counters.failed(failure, size)
        return SendCompleted(user_token, failure, False, result)
    if failure is None or scope.cancel_called:
        return SendCompleted(user_token, None, True, None)
    return SendCompleted(user_token, failure, False, result)
