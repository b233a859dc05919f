"""The floor of the ``small`` scenario's send loop for any Trio client, on a real socket.

Usage::

    python bench/send_floor.py [--count 3000] [--rounds 3]

Against smtp-sink on loopback (started here, as bench/run.py starts it), three one-connection
loops of 1 KiB messages, alternately: the bytes a ``send()`` puts on the wire written by hand
on ``trio.open_tcp_stream`` (MAIL, RCPT and DATA in one write, the data and terminator after
``354``: two round trips per message, the replies only counted -- no validation, no
deadlines, no outcome), ``SmtpClient.send`` in a loop, and ``smtplib.SMTP.sendmail`` (four
round trips).  The first is what Trio's sockets and scheduler and the kernel cost alone, and
so the least a Trio ``send()`` loop can spend (docs/benchmarks.rst, "What bounds them").
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _payload as payload
from _sink import Sink

from trio_smtp import Security, SmtpClient

_ENVELOPE = b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
    payload.SENDER.encode(),
    payload.RECIPIENT.encode(),
)


class _Replies:
    """Counts complete replies (a line whose fourth octet is a space) as they arrive."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def wait(self, count: int) -> None:
        while True:
            lines = self.buffer.split(b"\r\n")
            done = [i for i, line in enumerate(lines[:-1]) if line[3:4] == b" "]
            if len(done) >= count:
                self.buffer = b"\r\n".join(lines[done[count - 1] + 1 :])
                return
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.buffer += data


async def bare(port: int, messages: list[bytes]) -> float:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    replies = _Replies(stream)
    await replies.wait(1)
    await stream.send_all(b"EHLO bench.client\r\n")
    await replies.wait(1)
    start = time.perf_counter()
    for raw in messages:
        await stream.send_all(_ENVELOPE)
        await replies.wait(3)
        await stream.send_all(raw + b".\r\n")
        await replies.wait(1)
    elapsed = time.perf_counter() - start
    await stream.send_all(b"QUIT\r\n")
    await stream.aclose()
    return len(messages) / elapsed


async def library(port: int, messages: list[bytes]) -> float:
    client = SmtpClient("127.0.0.1", port, security=Security.NONE, local_hostname="bench.client")
    async with client:
        start = time.perf_counter()
        for raw in messages:
            await client.send(raw, sender=payload.SENDER, recipients=[payload.RECIPIENT])
        return len(messages) / (time.perf_counter() - start)


def blocking(port: int, messages: list[bytes]) -> float:
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.client")
    start = time.perf_counter()
    for raw in messages:
        client.sendmail(payload.SENDER, [payload.RECIPIENT], raw)
    elapsed = time.perf_counter() - start
    client.quit()
    return len(messages) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="messages per loop")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    messages = payload.raw_messages(args.count, 1024)
    sink = Sink()
    try:
        for n in range(args.rounds):
            floor = trio.run(bare, sink.port, messages)
            ours = trio.run(library, sink.port, messages)
            theirs = blocking(sink.port, messages)
            print(
                f"round {n + 1}: bare Trio {floor:,.0f} msg/s, trio_smtp send() {ours:,.0f}, "
                f"smtplib {theirs:,.0f}  (bare / smtplib {floor / theirs:.2f}x, "
                f"trio_smtp / smtplib {ours / theirs:.2f}x)",
                flush=True,
            )
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
