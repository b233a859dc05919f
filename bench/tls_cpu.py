"""trio_smtp's own CPU per ``tls`` session, next to the same session written by hand.

Usage::

    python bench/tls_cpu.py                         # starts bench/_server.py itself
    python bench/tls_cpu.py --port PORT --cafile ca.pem --count 300 --repeat 5
    python bench/tls_cpu.py --profile tottime --only pool   # cProfile of its sessions

Each session is bench/run.py's ``tls`` scenario: connect, EHLO, STARTTLS, the handshake,
EHLO, AUTH PLAIN, one 1 KiB message, QUIT.  ``pool`` runs it as ``_trio_smtp_pool_tls``
does (an :class:`~trio_smtp.SmtpPool` of one connection that reconnects for every message
and resumes the TLS session of the one before); ``floor`` is bench/tls_floor.py's hand-written
session with ``--resume``: Trio's sockets, TLS and scheduler alone.  The difference between
the two is what the library itself spends per session.  The server runs in a process of its
own, so the figures are this process's CPU time only; each is the best of ``--repeat`` runs
(the first session of a run, a full handshake, is left out), stable to about 0.05 ms.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _payload as payload  # noqa: E402
import tls_floor  # noqa: E402

from trio_smtp import Security, SmtpPool  # noqa: E402

RCPTS = [payload.RECIPIENT]

Variant = Callable[[argparse.Namespace, bytes, Callable[[], None]], Coroutine[Any, Any, float]]


async def _pool(args: argparse.Namespace, message: bytes, mark: Callable[[], None]) -> float:
    """``SmtpPool.send`` reconnecting for every message, as bench/_workers.py does."""
    context = ssl.create_default_context(cafile=args.cafile)
    async with SmtpPool(
        "127.0.0.1",
        args.port,
        max_connections=1,
        max_messages_per_connection=1,
        security=Security.STARTTLS,
        credentials=(tls_floor.USER, tls_floor.PASSWORD),
        ssl_context=context,
        local_hostname="bench.client",
    ) as pool:
        await pool.send(message, sender=payload.SENDER, recipients=RCPTS)
        mark()
        start = time.process_time()
        for _ in range(args.count):
            await pool.send(message, sender=payload.SENDER, recipients=RCPTS)
        cpu = time.process_time() - start
    if context.session_stats()["hits"] < args.count:
        raise RuntimeError("sessions were not resumed")
    return cpu


async def _floor(args: argparse.Namespace, message: bytes, mark: Callable[[], None]) -> float:
    """bench/tls_floor.py's session, each resuming the one before."""
    context = ssl.create_default_context(cafile=args.cafile)
    resume = (await tls_floor.session(args.port, context, message, None)).session
    mark()
    start = time.process_time()
    for _ in range(args.count):
        resume = (await tls_floor.session(args.port, context, message, resume)).session
    return time.process_time() - start


VARIANTS: dict[str, Variant] = {"pool": _pool, "floor": _floor}


def _profile(args: argparse.Namespace, message: bytes) -> None:
    """One run of the first ``--only`` variant under cProfile (from its second session on)."""
    profiler = cProfile.Profile(time.thread_time)  # CPU, not the waits for the server
    trio.run(VARIANTS[args.only.split(",")[0]], args, message, profiler.enable)
    profiler.disable()
    stats = pstats.Stats(profiler).sort_stats(args.profile)
    stats.print_stats(args.lines)


def _start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    cmd = [sys.executable, str(HERE / "_server.py"), "--cafile", str(tmp / "ca.pem")]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def _measure(args: argparse.Namespace, message: bytes) -> None:
    print(f"client CPU per session, {args.count} sessions, best of {args.repeat}")
    for name in args.only.split(","):
        runs = sorted(
            trio.run(VARIANTS[name], args, message, lambda: None) for _ in range(args.repeat)
        )
        best, median = runs[0] / args.count * 1e3, runs[len(runs) // 2] / args.count * 1e3
        print(f"  {name:5s} {best:6.3f} ms (median {median:.3f})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, help="a running bench/_server.py (else one is started)")
    parser.add_argument("--cafile", help="its CA file (with --port)")
    parser.add_argument("--count", type=int, default=200, help="sessions per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is shown")
    parser.add_argument("--only", default=",".join(VARIANTS), help="pool, floor")
    parser.add_argument(
        "--profile", choices=("tottime", "cumtime"), help="profile a run (of the first --only)"
    )
    parser.add_argument("--lines", type=int, default=40, help="rows of the profile")
    args = parser.parse_args(argv)
    if args.port is not None:
        _run(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="tls_cpu-") as tmp:
        proc, address = _start_server(Path(tmp))
        args.port, args.cafile = address["port"], address["cafile"]
        try:
            _run(args)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()  # the server stops when its stdin closes
            proc.wait(timeout=10)
    return 0


def _run(args: argparse.Namespace) -> None:
    message = payload.raw_messages(1, 1024)[0]
    if args.profile:
        _profile(args, message)
    else:
        _measure(args, message)


if __name__ == "__main__":
    sys.exit(main())
