"""A timeout waiting for the reply to the end of data (or to BDAT LAST) is
SmtpDeliveryTimeoutError: both "maybe delivered" and a timeout; and each phase of a
transaction keeps its own deadline budget (one cancel scope per transaction, moved)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage

import pytest
import trio
import trio.testing

from trio_smtp import (
    Security,
    SmtpClient,
    SmtpDeliveryTimeoutError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpTimeoutError,
    Timeouts,
)
from trio_smtp._cli.common import EXIT_CONNECTION, EXIT_MAYBE_DELIVERED
from trio_smtp._cli.main import _report_error
from trio_smtp._io.transport import Transport
from trio_smtp.protocol import ClientConnection
from trio_smtp.testing import Delay, SmtpServer

MakeMessage = Callable[..., EmailMessage]

# (disabled extensions, how the body is given): DATA and BDAT, in memory and streamed.
PATHS = {
    "data": ({"CHUNKING"}, "memory"),
    "data-streamed": ({"CHUNKING"}, "streamed"),
    "data-one-by-one": ({"CHUNKING", "PIPELINING"}, "memory"),
    "bdat": (set(), "memory"),
    "bdat-streamed": (set(), "streamed"),
}


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    # An async iterable, not a file: a file is read in a worker thread, during which the
    # autojump clock would jump to the server's idle timeout.
    for start in range(0, len(data), 100):
        yield data[start : start + 100]


async def _send(client: SmtpClient, message: EmailMessage, how: str) -> None:
    if how == "memory":
        await client.send(message)
    else:
        body = _chunks(message.as_bytes())
        await client.send(body, sender="me@example.org", recipients=["you@example.net"])


def _client(server: SmtpServer, timeouts: Timeouts | None = None) -> SmtpClient:
    # A fixed local_hostname: the default FQDN lookup runs in a thread, which the autojump
    # clock would count in the time measured below.
    return SmtpClient(
        server.host,
        server.port,
        security=Security.NONE,
        timeouts=timeouts,
        local_hostname="client.example",
    )


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_end_of_data_timeout_is_maybe_delivered(
    autojump_clock: trio.testing.MockClock, path: str, make_message: MakeMessage
) -> None:
    disabled, how = PATHS[path]
    async with SmtpServer(tls="none", disable=disabled) as server:
        server.on("END_OF_DATA", Delay(10_000), times=1)
        timeouts = Timeouts(mail=20, rcpt=20, data_termination=30)
        async with _client(server, timeouts) as client:
            start = trio.current_time()
            with pytest.raises(SmtpDeliveryTimeoutError) as info:
                await _send(client, make_message(to="you@example.net"), how)
            # The data_termination budget, not another phase's and not twice that.  (With
            # MAIL, RCPT and BDAT LAST in one write, the server may hold MAIL's reply until
            # the message is processed: that wait gets the end-of-data budget too.)
            assert 30 <= trio.current_time() - start < 31
            error = info.value
            assert isinstance(error, SmtpDeliveryUnknownError)
            assert isinstance(error, SmtpTimeoutError)
            assert isinstance(error, TimeoutError)
            assert not error.is_transient  # never retried as if nothing happened
            assert "may have been delivered" in str(error)
            await _send(client, make_message(to="you@example.net"), how)
        assert len(server.connections) == 2  # the timed-out session was never reused


@pytest.mark.parametrize("phase", ["MAIL", "RCPT", "DATA"])
async def test_timeout_before_end_of_data_is_a_plain_timeout(
    autojump_clock: trio.testing.MockClock, phase: str, make_message: MakeMessage
) -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on(phase, Delay(10_000), times=1)
        async with _client(server) as client:
            with pytest.raises(SmtpTimeoutError) as info:
                await client.send(make_message())
    assert not isinstance(info.value, SmtpDeliveryUnknownError)
    assert info.value.is_transient


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
async def test_each_phase_has_its_own_budget(
    autojump_clock: trio.testing.MockClock, pipelining: bool, make_message: MakeMessage
) -> None:
    """Every reply takes 80 % of its budget: fine, as each phase gets a fresh one (RFC 5321
    §4.5.3.2), though the transaction takes several budgets' worth.  (With PIPELINING the
    server may hold MAIL's reply until DATA's, so only one reply per group is slowed.)"""
    disabled = {"CHUNKING"} if pipelining else {"CHUNKING", "PIPELINING"}
    phases = ("MAIL", "END_OF_DATA") if pipelining else ("MAIL", "RCPT", "DATA", "END_OF_DATA")
    timeouts = Timeouts(mail=10, rcpt=10, data_initiation=10, data_block=10, data_termination=10)
    async with SmtpServer(tls="none", disable=disabled) as server:
        for phase in phases:
            server.on(phase, Delay(8), times=2)
        async with _client(server, timeouts) as client:
            start = trio.current_time()
            for _ in range(2):
                await client.send(make_message())
            assert trio.current_time() - start >= 2 * 8 * len(phases)
        assert len(server.connections) == 1
        assert len(server.messages) == 2


async def test_phase_deadline_after_a_slow_phase_is_fresh(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage
) -> None:
    """A slow MAIL (9 of 10 s) leaves the end of data a full budget of its own: the
    deadline is moved at each phase, not left where the previous phase put it."""
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("MAIL", Delay(9), times=1)
        server.on("END_OF_DATA", Delay(12), times=1)
        timeouts = Timeouts(mail=10, data_termination=13)
        async with _client(server, timeouts) as client:
            await client.send(make_message())
        assert len(server.messages) == 1


async def test_user_cancel_inside_a_transaction_is_not_a_timeout(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage
) -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", Delay(100), times=1)
        async with _client(server, Timeouts(data_termination=1000)) as client:
            with trio.move_on_after(50) as scope:
                await client.send(make_message())
            assert scope.cancelled_caught  # Cancelled reached the user's scope unchanged
            await client.send(make_message())
        assert len(server.connections) == 2


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (SmtpDeliveryTimeoutError("timed out waiting for the end of data"), EXIT_MAYBE_DELIVERED),
        (SmtpDeliveryUnknownError("lost"), EXIT_MAYBE_DELIVERED),
        # The type decides, not the text.
        (SmtpTimeoutError("timed out; the message may have been delivered"), EXIT_CONNECTION),
    ],
)
def test_cli_exit_status_follows_the_type(
    error: SmtpError, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _report_error(error) == status
    assert ("MAYBE DELIVERED" in capsys.readouterr().err) is (status == EXIT_MAYBE_DELIVERED)


async def test_a_deadline_that_expires_as_its_phase_completes_is_reported_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The reply and the expiry in the same scheduler tick: the phase's I/O returned, but
    the transaction's scope is cancelled.  The next phase reports the previous one as
    timed out (by name), instead of a Cancelled surfacing later under another name."""
    left, _right = trio.testing.memory_stream_pair()
    transport = Transport(left, ClientConnection(), host="test", timeouts=Timeouts())
    expected = pytest.raises(SmtpTimeoutError, match="after 1 s waiting for MAIL")
    with expected, transport.phases() as phases:
        phases.arm(1, "MAIL", SmtpTimeoutError)
        with trio.CancelScope(shield=True):
            await trio.sleep(2)  # the deadline passes; nothing is cancelled here
        phases.arm(1, "RCPT", SmtpTimeoutError)
