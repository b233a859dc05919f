"""Where "may have been delivered" starts: only once the write carrying the end of the data
(the terminator, or ``BDAT n LAST``) has completed.  A write of it that fails is "not
delivered"; a cancellation after it is not reported as a clean cancel.  Real servers on
loopback; what the server stored is checked, not only what the client said."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from helpers.streams import ForwardingStream

from trio_smtp import (
    OutgoingMessage,
    Security,
    SendCompleted,
    SendResult,
    SmtpClient,
    SmtpConnectError,
    SmtpDeliveryUnknownError,
)
from trio_smtp._message.sources import StreamedBody
from trio_smtp.testing import Delay, Shutdown, SmtpServer

FROM = "a@example.org"
TO = ["b@example.net"]


class _FailsOnceOn(ForwardingStream):
    """A TCP stream whose ``send_all`` fails, writing nothing, for the first write holding
    ``marker``: what that write carried provably never left this machine."""

    def __init__(self, inner: trio.SocketStream, marker: bytes) -> None:
        super().__init__(inner)
        self.marker = marker
        self.failed_writes = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not self.failed_writes and self.marker in bytes(data):
            self.failed_writes += 1
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("connection reset before the write")
        await self.inner.send_all(data)


def _client(server: SmtpServer, marker: bytes, streams: list[_FailsOnceOn]) -> SmtpClient:
    async def factory() -> trio.abc.Stream:
        stream = _FailsOnceOn(await trio.open_tcp_stream(server.host, server.port), marker)
        if streams:  # only the first connection fails
            stream.failed_writes = 1
        streams.append(stream)
        return stream

    return SmtpClient(server.host, security=Security.NONE, stream_factory=factory)


def _body(i: int) -> bytes:
    return b"Subject: %d\r\n\r\nmessage %d\r\n" % (i, i)


async def test_send_many_terminator_write_that_fails_is_not_delivered() -> None:
    streams: list[_FailsOnceOn] = []
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        batch = [OutgoingMessage(_body(i), sender=FROM, recipients=TO) for i in range(3)]
        async with _client(server, b"\r\n.\r\n", streams) as client:
            outcomes = await client.send_many(batch)
        first, second, third = outcomes
        # Message 0's data and terminator (with message 1's envelope) never left.
        assert isinstance(first, SmtpConnectError)
        assert not isinstance(first, SmtpDeliveryUnknownError)
        assert isinstance(second, SmtpConnectError)
        assert isinstance(third, SendResult)
        assert streams[0].failed_writes == 1
        assert [m.data for m in server.messages] == [_body(2)]
        assert [m.connection for m in server.messages] == [server.connections[1]]


async def test_bdat_last_write_that_fails_is_not_delivery_unknown() -> None:
    # A body larger than one chunk: BDAT chunks, then "BDAT n LAST" in a write of its own.
    streams: list[_FailsOnceOn] = []
    body = b"Subject: big\r\n\r\n" + b"y" * 3_000_000 + b"\r\n"
    async with SmtpServer(tls="none") as server:
        async with _client(server, b" LAST\r\n", streams) as client:
            with pytest.raises(SmtpConnectError) as info:
                await client.send(body, sender=FROM, recipients=TO)
            assert not isinstance(info.value, SmtpDeliveryUnknownError)
            await client.send(_body(1), sender=FROM, recipients=TO)  # a new connection
        assert streams[0].failed_writes == 1
        assert [m.data for m in server.messages if m.accepted] == [_body(1)]


@pytest.fixture
async def bdat_server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tls="none") as server:  # PIPELINING + CHUNKING
        yield server


async def test_bdat_group_write_that_fails_on_reused_connection_is_sent_again(
    bdat_server: SmtpServer,
) -> None:
    # MAIL, RCPT and BDAT n LAST in one write that fails: nothing complete left, so the
    # reused connection is stale and the message goes (once) on a new one.
    streams: list[_FailsOnceOn] = []
    async with _client(bdat_server, b"Subject: 2", streams) as client:
        await client.send(_body(1), sender=FROM, recipients=TO)
        await client.send(_body(2), sender=FROM, recipients=TO)
    assert streams[0].failed_writes == 1
    assert [m.data for m in bdat_server.messages if m.accepted] == [_body(1), _body(2)]
    assert len(bdat_server.connections) == 2
    assert sum(c.verbs.count("MAIL") for c in bdat_server.connections) == 2


async def test_bdat_group_421_to_mail_on_reused_connection_is_sent_again(
    bdat_server: SmtpServer,
) -> None:
    # 421 to MAIL (an idle session the server is closing): MAIL was refused, so the BDAT
    # LAST behind it was too -- nothing accepted, safe to send again, once.
    async with SmtpClient(bdat_server.host, bdat_server.port, security=Security.NONE) as client:
        await client.send(_body(1), sender=FROM, recipients=TO)
        bdat_server.on("MAIL", Shutdown(), times=1)
        await client.send(_body(2), sender=FROM, recipients=TO)
    assert [m.data for m in bdat_server.messages if m.accepted] == [_body(1), _body(2)]
    assert len(bdat_server.connections) == 2


# -- a cancel after the end of data cannot stop the delivery: never reported as a cancel --------


async def _wait_for_end_of_data(server: SmtpServer) -> None:
    # The server holds its reply to the end of data (Delay): wait until it has the data and
    # every task -- the client's included -- is blocked waiting.
    with trio.fail_after(20):
        while not any(("DATA" in c.verbs or "BDAT" in c.verbs) for c in server.connections):  # noqa: ASYNC110
            await trio.sleep(0.005)
    await trio.testing.wait_all_tasks_blocked()


@pytest.mark.parametrize("disable", [{"CHUNKING"}, set()], ids=["data", "bdat"])
async def test_send_async_cancel_after_end_of_data_is_delivery_unknown(
    disable: set[str],
) -> None:
    async with SmtpServer(tls="none", disable=disable) as server:
        server.on("END_OF_DATA", Delay(3600), times=1)
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            client.send_async(_body(1), "late", sender=FROM, recipients=TO)
            await _wait_for_end_of_data(server)
            client.send_async_cancel()
            with trio.fail_after(20):
                event = await client.completed.receive()
            assert isinstance(event.error, SmtpDeliveryUnknownError)
            assert "cancelled" in str(event.error)
            assert (event.user_token, event.cancelled, event.result) == ("late", False, None)
            assert client.statistics().messages_failed == 1
            await client.send(_body(2), sender=FROM, recipients=TO)  # a new connection
    # The server did take the first message (recorded when its delayed reply is abandoned
    # at shutdown): "cancelled" would have been a lie.
    assert sorted(m.data for m in server.messages) == [_body(1), _body(2)]
    assert len(server.connections) == 2


async def test_send_async_cancel_before_end_of_data_is_still_a_cancel() -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("DATA", Delay(3600), times=1)
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            client.send_async(_body(1), "early", sender=FROM, recipients=TO)
            await _wait_for_end_of_data(server)
            client.send_async_cancel()
            with trio.fail_after(20):
                event = await client.completed.receive()
        assert event == SendCompleted("early", None, True, None)
        assert server.messages == []


async def test_outer_cancel_after_end_of_data_propagates_and_event_says_unknown() -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", Delay(3600), times=1)
        client = SmtpClient(server.host, server.port, security=Security.NONE)
        with trio.CancelScope() as outer:
            async with client:
                client.send_async(_body(1), "outer", sender=FROM, recipients=TO)
                await _wait_for_end_of_data(server)
                outer.cancel()
                await trio.sleep_forever()
        assert outer.cancelled_caught  # Cancelled went through, as Trio requires
        events = [event async for event in client.completed]
        assert len(events) == 1
        assert isinstance(events[0].error, SmtpDeliveryUnknownError)
        assert not events[0].cancelled


async def test_send_cancelled_after_end_of_data_raises_cancelled() -> None:
    # send() in the caller's task: Cancelled propagates (the docstring warns the message
    # may have been delivered -- here it was).
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", Delay(3600), times=1)
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:

                    async def cancel_at_end_of_data() -> None:
                        await _wait_for_end_of_data(server)
                        scope.cancel()

                    nursery.start_soon(cancel_at_end_of_data)
                    await client.send(_body(1), sender=FROM, recipients=TO)
            assert scope.cancelled_caught
    assert [m.data for m in server.messages] == [_body(1)]


# -- a cancel during the final cleanup never drops a delivered result ---------------------------


async def test_cancel_while_closing_the_file_keeps_the_delivered_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closing = trio.Event()
    closed: list[bool] = []
    original = StreamedBody.aclose

    async def slow_aclose(self: StreamedBody) -> None:
        # A close that takes a while (a network file system, say) and checkpoints.
        closing.set()
        await trio.sleep(0.2)
        await original(self)
        closed.append(True)

    monkeypatch.setattr(StreamedBody, "aclose", slow_aclose)
    path = tmp_path / "message.eml"
    path.write_bytes(_body(1))
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            client.send_async(path, "file", sender=FROM, recipients=TO)
            await closing.wait()
            client.send_async_cancel()  # the message is delivered: too late to cancel
            with trio.fail_after(20):
                event = await client.completed.receive()
        assert event.error is None and not event.cancelled
        assert event.result is not None and event.result.accepted == tuple(TO)
        assert closed == [True]  # the file was still closed
        assert [m.data for m in server.messages] == [_body(1)]
