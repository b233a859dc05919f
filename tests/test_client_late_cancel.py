"""Once the end of the data is written, no cancel turns the outcome into ``cancelled=True``
(design rule 10): the event carries the result or SmtpDeliveryUnknownError, for every way a
body goes -- one write, DATA written in blocks while the server is watched, streamed -- and
also when the cancel lands while the send is already failing.  ``send()`` lets a bare
``Cancelled`` through (never an exception group).  Real servers on loopback; what the
server stored is checked too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from helpers.streams import ForwardingStream

from trio_smtp import (
    Security,
    SendCompleted,
    SmtpClient,
    SmtpDeliveryUnknownError,
)
from trio_smtp.testing import Handover, Hangup, SmtpServer

FROM = "a@example.org"
TO = ["b@example.net"]
# Over the transport's one-write size (256 KiB): written in blocks while the server is
# watched for an early reply.
LARGE = b"Subject: large\r\n\r\n" + b"x" * 70 + b"\r\n" + (b"y" * 70 + b"\r\n") * 8_000


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 50_000):
        yield data[start : start + 50_000]


def _body(kind: str, data: bytes, tmp_path: Path) -> bytes | AsyncIterator[bytes] | Path:
    """The message as ``send_async`` takes it: bytes, an async iterable, or a file path."""
    if kind == "memory":
        return data
    if kind == "iterable":
        return _chunks(data)
    path = tmp_path / "message.eml"
    path.write_bytes(data)
    return path


BODIES = [
    ("memory", b"Subject: small\r\n\r\nsmall\r\n"),
    ("memory", LARGE),
    ("iterable", LARGE),
    ("path", LARGE),
]
IDS = ["memory-one-write", "memory-large", "iterable", "path"]


def _answer_later(got_it: trio.Event, release: trio.Event) -> Handover:
    """END_OF_DATA: the server has the whole message; it answers 250 once ``release`` is
    set (by then the client has gone: the reply is never read)."""

    async def handler(stream: trio.abc.Stream, pending: bytes) -> None:
        got_it.set()
        await release.wait()
        try:
            await stream.send_all(b"250 2.0.0 Ok: queued\r\n")
        except trio.BrokenResourceError:
            pass

    return Handover(handler)


@pytest.mark.parametrize("disable", [{"CHUNKING"}, set()], ids=["data", "bdat"])
@pytest.mark.parametrize(("kind", "data"), BODIES, ids=IDS)
async def test_send_async_cancel_after_end_of_data_is_never_a_cancel(
    kind: str, data: bytes, disable: set[str], tmp_path: Path
) -> None:
    got_it, release = trio.Event(), trio.Event()
    async with SmtpServer(tls="none", disable=disable) as server:
        server.on("END_OF_DATA", _answer_later(got_it, release), times=1)
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            client.send_async(_body(kind, data, tmp_path), "late", sender=FROM, recipients=TO)
            with trio.fail_after(20):
                await got_it.wait()
            await trio.testing.wait_all_tasks_blocked()  # the client awaits the reply
            client.send_async_cancel()
            with trio.fail_after(20):
                event = await client.completed.receive()
            release.set()
            assert isinstance(event.error, SmtpDeliveryUnknownError), event
            assert (event.user_token, event.cancelled, event.result) == ("late", False, None)
            assert client.statistics().messages_failed == 1
    # The server has it: "cancelled" would have been a lie.
    assert [m.data for m in server.messages] == [data]


class _CancelsOnClose(ForwardingStream):
    """Calls ``on_close`` (which cancels the send) as the client closes the connection: the
    cancel lands during the cleanup of a send that is already failing."""

    def __init__(self, inner: trio.abc.Stream, on_close: Callable[[], None]) -> None:
        super().__init__(inner)
        self.on_close = on_close

    async def aclose(self) -> None:
        self.on_close()
        await self.inner.aclose()


@pytest.mark.parametrize(("kind", "data"), BODIES, ids=IDS)
async def test_cancel_during_cleanup_keeps_delivery_unknown(
    kind: str, data: bytes, tmp_path: Path
) -> None:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", Hangup(), times=1)  # the message, then no reply
        client: SmtpClient

        async def factory() -> trio.abc.Stream:
            inner = await trio.open_tcp_stream(server.host, server.port)
            return _CancelsOnClose(inner, lambda: client.send_async_cancel())

        client = SmtpClient(server.host, security=Security.NONE, stream_factory=factory)
        async with client:
            client.send_async(_body(kind, data, tmp_path), "lost", sender=FROM, recipients=TO)
            with trio.fail_after(20):
                event = await client.completed.receive()
        assert isinstance(event.error, SmtpDeliveryUnknownError), event
        assert "lost after the end of data" in str(event.error)  # the send's own error
        assert (event.user_token, event.cancelled, event.result) == ("lost", False, None)
    assert [m.data for m in server.messages] == [data]


@pytest.mark.parametrize(("kind", "data"), BODIES, ids=IDS)
async def test_send_cancelled_after_end_of_data_raises_bare_cancelled(
    kind: str, data: bytes, tmp_path: Path
) -> None:
    # send() in the caller's task: Cancelled propagates as Trio requires (its docstring says
    # the message may have been delivered), alone -- never inside an exception group.
    got_it, release = trio.Event(), trio.Event()
    raised: list[BaseException] = []
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("END_OF_DATA", _answer_later(got_it, release), times=1)
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:

                    async def cancel_at_end_of_data() -> None:
                        await got_it.wait()
                        await trio.testing.wait_all_tasks_blocked()
                        scope.cancel()

                    nursery.start_soon(cancel_at_end_of_data)
                    try:
                        await client.send(_body(kind, data, tmp_path), sender=FROM, recipients=TO)
                    except BaseException as exc:
                        raised.append(exc)
                        raise
            release.set()
            assert scope.cancelled_caught
            assert [type(exc) for exc in raised] == [trio.Cancelled]
    assert [m.data for m in server.messages] == [data]


async def test_cancel_before_end_of_data_is_still_a_cancel(tmp_path: Path) -> None:
    # The server reads the envelope, answers 354, then reads nothing: the data never ends.
    started = trio.Event()

    async def stall(stream: trio.abc.Stream, pending: bytes) -> None:
        await stream.send_all(b"354 go ahead\r\n")
        started.set()
        await trio.sleep_forever()

    async with SmtpServer(tls="none", disable={"CHUNKING"}) as server:
        server.on("DATA", Handover(stall), times=1)
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            client.send_async(_chunks(LARGE * 40), "early", sender=FROM, recipients=TO)
            with trio.fail_after(20):
                await started.wait()
            await trio.testing.wait_all_tasks_blocked()
            client.send_async_cancel()
            with trio.fail_after(20):
                event = await client.completed.receive()
        assert event == SendCompleted("early", None, True, None)
    assert server.messages == []
