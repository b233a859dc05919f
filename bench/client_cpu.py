"""trio_smtp's own CPU per message, against an in-process server (no sockets, no kernel).

Usage::

    python bench/client_cpu.py                 # every row (see VARIANTS)
    python bench/client_cpu.py --count 10000 --repeat 9 --only many

``bench/run.py`` measures what users see; on a loopback socket a small message's cost is
about half Trio's socket I/O and the kernel, the same for any Trio program, and the machine's
noise is larger than most single improvements.  This script takes both away: the client
talks to a stream that answers like smtp-sink at once (PIPELINING, 8BITMIME, DSN), so what it
measures is the client's own work per message -- validation, the sans-IO core, deadlines and
the layers above -- plus a fixed ~11 us for the fake server and Trio's scheduling (the
``bare`` row: the same bytes written and read with no library at all).  Each figure is the
best of ``--repeat`` runs of thread CPU time, which is stable to about a microsecond.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _payload as payload  # noqa: E402

from trio_smtp import OutgoingMessage, Security, SmtpClient, SmtpPool  # noqa: E402

_EHLO = (
    b"250-bench.fake\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"
)
_REPLIES = {
    b"EHLO": _EHLO,
    b"MAIL": b"250 2.1.0 Ok\r\n",
    b"RCPT": b"250 2.1.5 Ok\r\n",
    b"RSET": b"250 2.0.0 Ok\r\n",
    b"QUIT": b"221 2.0.0 Bye\r\n",
}


class FakeSink(trio.abc.HalfCloseableStream):
    """Answers every command line and every end of data at once, as smtp-sink does."""

    def __init__(self) -> None:
        self._out = bytearray(b"220 bench.fake ESMTP\r\n")
        self._partial = b""
        self._in_data = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        *lines, self._partial = (self._partial + bytes(data)).split(b"\r\n")
        for line in lines:
            if self._in_data:
                if line == b".":
                    self._in_data = False
                    self._out += b"250 2.0.0 Ok: queued as BENCH\r\n"
            elif line[:4].upper() == b"DATA":
                self._in_data = True
                self._out += b"354 End data with <CR><LF>.<CR><LF>\r\n"
            else:
                self._out += _REPLIES.get(line[:4].upper(), b"502 5.5.2 Error\r\n")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self._out:
            raise trio.BrokenResourceError("the client waits for a reply nobody owes it")
        data = bytes(self._out)
        self._out.clear()
        return data

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def _fake_stream() -> trio.abc.Stream:
    return FakeSink()


def _client() -> SmtpClient:
    return SmtpClient(
        "bench.fake",
        25,
        security=Security.NONE,
        stream_factory=_fake_stream,
        local_hostname="bench.client",
    )


def _pool(connections: int = 1) -> SmtpPool:
    return SmtpPool(
        "bench.fake",
        25,
        security=Security.NONE,
        stream_factory=_fake_stream,
        local_hostname="bench.client",
        max_connections=connections,
        # One session throughout, as ``loop`` has: the default (a new one every 100
        # messages) would add a connection's setup to what the row compares.
        max_messages_per_connection=None,
    )


async def _loop(messages: list[bytes]) -> float:
    async with _client() as client:
        await client.send(messages[0], sender=payload.SENDER, recipients=[payload.RECIPIENT])
        start = time.thread_time()
        for raw in messages:
            await client.send(raw, sender=payload.SENDER, recipients=[payload.RECIPIENT])
        return time.thread_time() - start


async def _many(messages: list[bytes]) -> float:
    items = [
        OutgoingMessage(m, sender=payload.SENDER, recipients=[payload.RECIPIENT]) for m in messages
    ]
    async with _client() as client:
        await client.send(messages[0], sender=payload.SENDER, recipients=[payload.RECIPIENT])
        start = time.thread_time()
        await client.send_many(items)
        return time.thread_time() - start


async def _pool_loop(messages: list[bytes]) -> float:
    """The send loop through SmtpPool (one task, one connection): ``loop`` plus the pool's
    own work per message (the lease, the pacing, the counting)."""
    async with _pool() as pool:
        await pool.send(messages[0], sender=payload.SENDER, recipients=[payload.RECIPIENT])
        start = time.thread_time()
        for raw in messages:
            await pool.send(raw, sender=payload.SENDER, recipients=[payload.RECIPIENT])
        return time.thread_time() - start


#: Connections of the ``poolmany`` and ``clients`` rows (bench/run.py's ``many`` scenario).
CONNECTIONS = 8


def _items(messages: list[bytes]) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(m, sender=payload.SENDER, recipients=[payload.RECIPIENT]) for m in messages
    ]


async def _pool_many(messages: list[bytes]) -> float:
    """``SmtpPool.send_many`` over 8 connections (opened by a first batch, untimed): the
    pool's own work per message spreading one batch over its connections."""
    items = _items(messages)
    async with _pool(CONNECTIONS) as pool:
        await pool.send_many(items[: CONNECTIONS * 2])
        start = time.thread_time()
        outcomes = await pool.send_many(items)
        elapsed = time.thread_time() - start
    assert len(outcomes) == len(items)
    return elapsed


async def _clients(messages: list[bytes]) -> float:
    """The reference for ``poolmany``: 8 SmtpClients in one trio.run, each doing
    ``send_many`` on an eighth of the items (connections opened untimed)."""
    items = _items(messages)
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(_client()) for _ in range(CONNECTIONS)]
        for client in clients:
            await client.send(messages[0], sender=payload.SENDER, recipients=[payload.RECIPIENT])
        start = time.thread_time()
        async with trio.open_nursery() as nursery:
            for k, client in enumerate(clients):
                nursery.start_soon(client.send_many, items[k::CONNECTIONS])
        return time.thread_time() - start


async def _bare(messages: list[bytes]) -> float:
    """The floor: the pipelined bytes send_many writes, replies read, nothing checked."""
    stream = FakeSink()
    envelope = b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
        payload.SENDER.encode(),
        payload.RECIPIENT.encode(),
    )
    await stream.receive_some()
    await stream.send_all(b"EHLO bench.client\r\n")
    await stream.receive_some()
    start = time.thread_time()
    await stream.send_all(envelope)
    await stream.receive_some()
    for raw in messages:
        await stream.send_all(raw + b".\r\n" + envelope)
        (await stream.receive_some()).split(b"\r\n")
    return time.thread_time() - start


VARIANTS: dict[str, Callable[[list[bytes]], Any]] = {
    "loop": _loop,
    "many": _many,
    "pool": _pool_loop,
    "poolmany": _pool_many,
    "clients": _clients,
    "bare": _bare,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="messages per run")
    parser.add_argument("--size", type=int, default=1024, help="body octets per message")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the best is shown")
    parser.add_argument("--only", default=",".join(VARIANTS), help=", ".join(VARIANTS))
    args = parser.parse_args(argv)
    messages = payload.raw_messages(args.count, args.size)
    print(f"client CPU per message, {args.count:,} x {args.size:,} bytes, best of {args.repeat}")
    for name in args.only.split(","):
        runs = sorted(trio.run(VARIANTS[name], messages) for _ in range(args.repeat))
        best, median = runs[0] / args.count * 1e6, runs[len(runs) // 2] / args.count * 1e6
        print(f"  {name:8s} {best:7.1f} us (median {median:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
