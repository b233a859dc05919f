"""The floor of the ``tls`` scenario for any Trio client: the same session written by hand.

Usage (against ``bench/_server.py --cafile ca.pem``, which prints its port)::

    python bench/tls_floor.py --port PORT --cafile ca.pem [--count 200] [--resume]

Each session is what bench/run.py's ``tls`` scenario asks of a client -- connect, greeting,
EHLO, STARTTLS, the handshake, EHLO, AUTH PLAIN, one 1 KiB message (MAIL, RCPT and
``BDAT n LAST`` in one write: the testing server offers CHUNKING), QUIT, close -- on
``trio.open_tcp_stream`` and ``trio.SSLStream`` directly, with no parsing beyond counting
reply lines, no deadlines, no checks and no logging.  ``--resume`` offers each session's
TLS session to the next, as ``SmtpPool`` does.  It prints sessions/s and the process's CPU
per session: what Trio's sockets, TLS and scheduler cost alone, and so the least a Trio
client can spend (docs/benchmarks.rst, "What bounds them").
"""

from __future__ import annotations

import argparse
import base64
import ssl
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _payload as payload

USER, PASSWORD = "bench", "bench-password"  # bench/_server.py's


async def replies(stream: trio.abc.Stream, count: int) -> None:
    """Read until ``count`` replies ended (a line whose fourth octet is a space)."""
    buffer = b""
    while sum(line[3:4] == b" " for line in buffer.split(b"\r\n")[:-1]) < count:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError("the server closed the connection")
        buffer += data


async def command(stream: trio.abc.Stream, line: bytes, count: int = 1) -> None:
    await stream.send_all(line)
    await replies(stream, count)


async def session(
    port: int, context: ssl.SSLContext, message: bytes, resume: ssl.SSLSession | None
) -> trio.SSLStream[trio.SocketStream]:
    plain = await trio.open_tcp_stream("127.0.0.1", port)
    await replies(plain, 1)
    await command(plain, b"EHLO bench.client\r\n")
    await command(plain, b"STARTTLS\r\n")
    tls = trio.SSLStream(plain, context, server_hostname="127.0.0.1")
    if resume is not None:
        tls.session = resume
    await tls.do_handshake()
    await command(tls, b"EHLO bench.client\r\n")
    secret = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    await command(tls, b"AUTH PLAIN " + secret + b"\r\n")
    envelope = f"MAIL FROM:<{payload.SENDER}>\r\nRCPT TO:<{payload.RECIPIENT}>\r\n".encode()
    await command(tls, envelope + b"BDAT %d LAST\r\n" % len(message) + message, 3)
    await command(tls, b"QUIT\r\n")
    await tls.aclose()
    return tls


async def run(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=args.cafile)
    message = payload.raw_messages(1, 1024)[0]
    resume = None
    for _ in range(args.count):
        tls = await session(args.port, context, message, resume)
        if args.resume:
            resume = tls.session


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--resume", action="store_true", help="resume each session's TLS session")
    args = p.parse_args()
    start, cpu = time.perf_counter(), time.process_time()
    trio.run(run, args)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"{args.count / seconds:.0f} sessions/s, client CPU {cpu / args.count * 1e3:.2f} ms "
        f"per session{' (resumed)' if args.resume else ''}"
    )


if __name__ == "__main__":
    main()
