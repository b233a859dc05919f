"""A simulated long link: a TCP forwarder on loopback that delays every byte by a fixed time.

``python bench/_delay.py --target HOST:PORT --delay 0.005`` listens on 127.0.0.1 (a free
port), prints one JSON line (host, port, delay) and forwards each accepted connection to
``--target``, holding every chunk read in either direction for exactly ``--delay`` seconds
before writing it on: a fixed one-way delay, so the round trip is twice that.  Order is kept
(one FIFO queue per direction, flushed by one timer); bandwidth is not limited; an end of
file or a close is passed on after the same delay.  It serves until its stdin is closed,
then prints a second JSON line: how late the timer fired behind each chunk's due time
(mean, 99th percentile, max, in microseconds), so a run can show the delay it really had.

It runs in a process of its own (bench/run.py starts it) so that its CPU time is not
charged to the client being measured.  Its event loop uses ``select()``, whose timeout has
microsecond resolution (epoll's is a millisecond, which would add up to 1 ms to each
direction), and the process asks the kernel for a 1 us timer slack for the same reason.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import json
import selectors
import socket
import sys
from typing import Any

_HIGH_WATER = 4 * 1024 * 1024  # bytes queued for a peer before its source is paused
_PR_SET_TIMERSLACK = 29


class Lateness:
    """How late each flush ran behind its chunk's due time (seconds, one sample per chunk)."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def summary(self) -> dict[str, Any]:
        s = sorted(self.samples)
        if not s:
            return {"chunks": 0}
        return {
            "chunks": len(s),
            "mean_us": round(sum(s) / len(s) * 1e6, 1),
            "p99_us": round(s[min(len(s) - 1, int(len(s) * 0.99))] * 1e6, 1),
            "max_us": round(s[-1] * 1e6, 1),
        }


class Direction:
    """One direction of one connection: chunks waiting for their due time, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, late: Lateness) -> None:
        self.loop = loop
        self.delay = delay
        self.late = late
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.out: asyncio.Transport | None = None  # set once the far side is connected
        self.source: asyncio.Transport | None = None  # paused when ``out`` is full
        self.out_eof_read = False  # the socket ``out`` has read an end of file
        self.eof_written = False  # an end of file was written to ``out``

    def push(self, data: bytes | None) -> None:
        """Queue ``data`` (``None``: end of file) to be written ``delay`` from now."""
        self.queue.append((self.loop.time() + self.delay, data))
        if self.timer is None and self.out is not None:
            self.timer = self.loop.call_at(self.queue[0][0], self.flush)

    def flush(self) -> None:
        """Write every chunk that is due (all in one write), then wait for the next."""
        self.timer = None
        if self.out is None or self.out.is_closing():
            self.queue.clear()
            return
        now = self.loop.time()
        parts: list[bytes] = []
        while self.queue and self.queue[0][0] <= now:
            due, data = self.queue.popleft()
            self.late.samples.append(now - due)
            if data is None:
                if parts:
                    self.out.write(b"".join(parts))
                    parts = []
                self._end()
                continue
            parts.append(data)
        if parts:
            self.out.write(b"".join(parts))
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self.flush)

    def _end(self) -> None:
        """Pass an end of file on; a socket that has also read one is closed (whatever is
        still buffered for it is written first)."""
        assert self.out is not None
        if self.out_eof_read or not self.out.can_write_eof():
            self.out.close()
        else:
            self.out.write_eof()
        self.eof_written = True

    def start(self, out: asyncio.Transport) -> None:
        self.out = out
        if self.queue and self.timer is None:
            self.timer = self.loop.call_at(self.queue[0][0], self.flush)


class Side(asyncio.Protocol):
    """One socket of a forwarded connection: what it reads goes to ``outgoing``."""

    def __init__(self, outgoing: Direction, incoming: Direction, peer: Side | None) -> None:
        self.outgoing = outgoing  # what this side reads, delayed, for the other socket
        self.incoming = incoming  # what the other side read, delayed, for this socket
        self.peer = peer
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        self.outgoing.source = transport
        self.incoming.start(transport)

    def data_received(self, data: bytes) -> None:
        self.outgoing.push(data)

    def eof_received(self) -> bool:
        self.outgoing.push(None)
        self.incoming.out_eof_read = True
        # Keep the socket open while the other direction may still carry data.
        return not self.incoming.eof_written

    def connection_lost(self, exc: Exception | None) -> None:
        # A reset or a full close: the other side is closed once what is queued went out.
        self.outgoing.push(None)
        self.outgoing.loop.call_later(self.outgoing.delay * 2, self._close_peer)

    def _close_peer(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.incoming.source is not None:
            self.incoming.source.pause_reading()

    def resume_writing(self) -> None:
        if self.incoming.source is not None:
            self.incoming.source.resume_reading()


async def serve(target: tuple[str, int], delay: float) -> None:
    loop = asyncio.get_running_loop()
    late = Lateness()

    async def upstream(client: Side) -> None:
        try:
            _, server = await loop.create_connection(
                lambda: Side(client.incoming, client.outgoing, client), *target
            )
        except OSError:
            if client.transport is not None:
                client.transport.close()
            return
        client.peer = server  # type: ignore[assignment]

    def accepted() -> Side:
        to_server, to_client = Direction(loop, delay, late), Direction(loop, delay, late)
        side = Side(to_server, to_client, None)
        loop.call_soon(lambda: loop.create_task(upstream(side)))
        return side

    server = await loop.create_server(accepted, "127.0.0.1", 0, backlog=256)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"host": "127.0.0.1", "port": port, "delay": delay}), flush=True)
    stdin_closed = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), _on_stdin, stdin_closed)
    await stdin_closed
    server.close()
    print(json.dumps({"lateness": late.summary()}), flush=True)


def _on_stdin(closed: asyncio.Future[None]) -> None:
    import os

    if not os.read(sys.stdin.fileno(), 4096) and not closed.done():
        closed.set_result(None)


def _precise_timers() -> None:
    """Ask for a 1 us timer slack (Linux's default is 50 us); harmless where it fails."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", required=True, help="HOST:PORT to forward to")
    p.add_argument("--delay", type=float, default=0.005, help="one-way delay in seconds")
    args = p.parse_args()
    host, _, port = args.target.rpartition(":")
    if socket.inet_aton(host)[0] != 127:  # loopback only, whatever the caller asked
        raise SystemExit("the delay proxy forwards to 127.0.0.0/8 only")
    _precise_timers()
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(serve((host, int(port)), args.delay))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
