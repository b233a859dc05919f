"""The ``progress(sent, total)`` callback of a send: what it is told, how often, and what a
callback that raises does -- over DATA and BDAT, against the testing server."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from trio_smtp import Security, SmtpClient, SmtpPool
from trio_smtp._io.progress import MIN_INTERVAL, ProgressReporter
from trio_smtp.testing import SmtpServer

FROM = "from@example.org"
TO = ["to@example.net"]
# Lines starting with "." (stuffed for DATA), CRLF line ends: 2.4 MB, ten 256 KiB chunks.
LARGE = b"Subject: large\r\n\r\n" + b"".join(b".line %07d\r\n" % i for i in range(200_000))
SMALL = b"Subject: small\r\n\r\nhello\r\n"

Calls = list[tuple[int, "int | None"]]


@pytest.fixture(params=[(), ("CHUNKING",)], ids=["bdat", "data"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tls="none", disable=request.param, max_message_size=50_000_000) as srv:
        yield srv


def client_for(server: SmtpServer) -> SmtpClient:
    return SmtpClient(server.host, server.port, security=Security.NONE)


def check_calls(calls: Calls, size: int, total: int | None) -> None:
    """Non-decreasing, the total in every call, and a last call with every octet."""
    assert calls, "no progress call"
    assert all(t == total for _, t in calls)
    sents = [s for s, _ in calls]
    assert sents == sorted(sents) and sents[0] > 0
    assert sents[-1] == size


async def test_large_in_memory_message(server: SmtpServer) -> None:
    calls: Calls = []
    async with client_for(server) as client:
        await client.send(LARGE, sender=FROM, recipients=TO, progress=lambda *a: calls.append(a))
    check_calls(calls, len(LARGE), len(LARGE))
    assert 2 <= len(calls) <= len(LARGE) // (256 * 1024) + 2  # at most one per chunk
    assert server.messages[0].data == LARGE


async def test_file_has_its_size_as_total(server: SmtpServer, tmp_path: Path) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(LARGE)
    calls: Calls = []
    async with client_for(server) as client:
        await client.send(path, sender=FROM, recipients=TO, progress=lambda *a: calls.append(a))
    check_calls(calls, len(LARGE), len(LARGE))
    assert server.messages[0].data == LARGE


async def test_async_iterable_has_no_total(server: SmtpServer) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(LARGE), 100_000):
            yield LARGE[start : start + 100_000]

    calls: Calls = []
    async with client_for(server) as client:
        await client.send(pieces(), sender=FROM, recipients=TO, progress=lambda *a: calls.append(a))
    check_calls(calls, len(LARGE), None)
    assert server.messages[0].data == LARGE


async def test_small_message_gets_one_final_call(server: SmtpServer) -> None:
    calls: Calls = []
    async with client_for(server) as client:
        await client.send(SMALL, sender=FROM, recipients=TO, progress=lambda *a: calls.append(a))
        await client.send(SMALL, sender=FROM, recipients=TO)  # no callback: nothing to call
    assert calls == [(len(SMALL), len(SMALL))]


@pytest.mark.parametrize("lines", [10, 300_000], ids=["small", "large"])
async def test_bare_lf_bytes_end_at_their_total(server: SmtpServer, lines: int) -> None:
    """Line ends normalised on the way (DATA, BDAT): the last call still has sent == total."""
    body = b"Subject: lf\n\n" + b"x\n" * lines
    calls: Calls = []
    async with client_for(server) as client:
        await client.send(body, sender=FROM, recipients=TO, progress=lambda *a: calls.append(a))
    assert calls[-1][0] == calls[-1][1]
    assert server.messages[0].accepted


async def test_send_async_event_carries_the_callbacks_error(server: SmtpServer) -> None:
    def progress(sent: int, total: int | None) -> None:
        raise Stop("enough")

    async with client_for(server) as client:
        client.send_async(LARGE, "t", sender=FROM, recipients=TO, progress=progress)
        event = await client.completed.receive()
    assert isinstance(event.error, Stop) and not event.cancelled
    assert not any(m.accepted for m in server.messages)


class Stop(Exception):
    pass


@pytest.mark.parametrize("fail_at", [1, 2, "last"])
async def test_raising_callback_fails_the_send_and_delivers_nothing(
    server: SmtpServer, fail_at: int | str
) -> None:
    calls: Calls = []

    def progress(sent: int, total: int | None) -> None:
        calls.append((sent, total))
        if fail_at == len(calls) or (fail_at == "last" and sent == total):
            raise Stop(f"stop at {sent}")

    async with client_for(server) as client:
        with pytest.raises(Stop):
            await client.send(LARGE, sender=FROM, recipients=TO, progress=progress)
        await client.send(SMALL, sender=FROM, recipients=TO)  # a new connection works
    assert [m.data for m in server.messages if m.accepted] == [SMALL]
    assert len(server.connections) == 2


async def test_raising_callback_small_message(server: SmtpServer) -> None:
    def progress(sent: int, total: int | None) -> None:
        raise Stop

    async with client_for(server) as client:
        with pytest.raises(Stop):
            await client.send(SMALL, sender=FROM, recipients=TO, progress=progress)
        await client.send(SMALL, sender=FROM, recipients=TO)
    assert [m.data for m in server.messages if m.accepted] == [SMALL]


async def test_send_async_and_pool(server: SmtpServer) -> None:
    calls: Calls = []
    async with client_for(server) as client:
        client.send_async(
            LARGE, "t", sender=FROM, recipients=TO, progress=lambda *a: calls.append(a)
        )
        event = await client.completed.receive()
    assert event.error is None
    check_calls(calls, len(LARGE), len(LARGE))
    calls.clear()
    async with SmtpPool(server.host, server.port, security=Security.NONE) as pool:
        await pool.send(LARGE, sender=FROM, recipients=TO, progress=lambda *a: calls.append(a))
    check_calls(calls, len(LARGE), len(LARGE))


async def test_not_callable_is_refused_before_connecting(server: SmtpServer) -> None:
    async with client_for(server) as client:
        with pytest.raises(TypeError, match="progress"):
            await client.send(SMALL, sender=FROM, recipients=TO, progress=42)  # type: ignore[arg-type]
    assert not server.connections


async def test_rate_is_bounded_in_time(autojump_clock: trio.abc.Clock) -> None:
    """At most one call per MIN_INTERVAL, the first at once, and the final one always."""
    calls: list[tuple[float, int]] = []
    reporter = ProgressReporter(lambda s, t: calls.append((trio.current_time(), s)), 1000)
    for _ in range(100):  # 100 chunks in 1 s: 10 calls, not 100
        reporter.wrote(5)
        await trio.sleep(0.01)
    for _ in range(10):  # slow chunks: each one reported
        reporter.wrote(10)
        await trio.sleep(1)
    reporter.finish(400)
    times = [t for t, _ in calls]
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]  # the final call excepted
    assert all(g >= MIN_INTERVAL - 1e-9 for g in gaps)
    fast = [t for t in times if t < 1.0]
    assert 5 <= len(fast) <= 10  # 100 writes in 1 s: about ten calls
    slow = len(calls) - len(fast) - 1  # the slow writes (each reported but maybe the
    assert slow in (9, 10)  # first, 0.1 s after the last fast call), and the final call
    assert calls[0][1] == 5 and calls[-1][1] == 1000
