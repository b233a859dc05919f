"""One benchmark measurement in a process of its own: ``python bench/_workers.py CLIENT SCENARIO``.

bench/run.py starts this once per (round, scenario, client), so peak RSS is per client and no
client warms another's caches. The last line of stdout is the result as JSON. Everything the
client does not own (building messages, imports, reading CA files) happens before the clock
and the RSS baseline; connecting, EHLO, every transaction and QUIT happen inside them.

Fairness: every client keeps one connection for scenarios 1-4 and sends with its plain API
(smtplib ``sendmail``/``send_message``, aiosmtplib ``sendmail``/``send_message``, trio_smtp
``send``). aiosmtplib and smtplib have no PIPELINING support, so each of their transactions
costs MAIL, RCPT and DATA round trips; that is the libraries' behaviour, not the harness's.
All clients pass a fixed ``local_hostname`` so none pays for a ``getfqdn()`` lookup.

The many-connection scenarios (``long``, ``long_send``, ``many``; ``--connections N``) give
every client N connections and one shared queue of messages: aiosmtplib one task per
connection, smtplib one thread per connection, each taking the next message when it is
free; trio_smtp an :class:`~trio_smtp.SmtpPool` (``send_many``, or ``send`` from N tasks) or
N hand-made :class:`~trio_smtp.SmtpClient` objects each doing ``send_many`` on its share.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import smtplib
import ssl
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _payload as payload

LOCAL_HOSTNAME = "bench.client"
RCPTS = [payload.RECIPIENT]
#: Facts a client reports besides its time (merged into the result).
EXTRA: dict[str, Any] = {}
#: Scenarios where each client uses ``--connections`` connections over a shared queue.
MULTI = ("long", "long_send", "many")


def maxrss_kib() -> int:
    """Peak resident set size of this process so far, in KiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --- inputs, built before the clock starts -----------------------------------------------


def inputs(args: argparse.Namespace) -> Any:
    """What the scenario sends; built outside the measurement."""
    if args.scenario in ("small", "long_chunking", *MULTI):
        return payload.raw_messages(args.count, args.size)
    if args.scenario == "large":
        return [payload.raw_messages(1, args.size)[0]] * args.count
    if args.scenario == "emailmessage":
        return payload.email_messages(args.count, args.size)
    if args.scenario == "file":
        return Path(args.file)
    if args.scenario == "tls":
        return payload.raw_messages(1, args.size)[0]
    raise SystemExit(f"unknown scenario {args.scenario}")


def client_context(cafile: str) -> ssl.SSLContext:
    """A verifying client context that trusts the testing server's CA."""
    return ssl.create_default_context(cafile=cafile)


# --- smtplib (blocking) ---------------------------------------------------------------------


def run_smtplib(args: argparse.Namespace, data: Any) -> None:
    """One ``smtplib.SMTP`` connection; ``sendmail``/``send_message`` per message."""
    if args.scenario == "tls":
        raise SystemExit("smtplib is not part of the TLS scenario")
    if args.scenario in MULTI:
        _smtplib_threads(args, data)
        return
    with smtplib.SMTP(args.host, args.port, local_hostname=LOCAL_HOSTNAME) as s:
        s.ehlo()
        if args.scenario == "emailmessage":
            for msg in data:
                s.send_message(msg)
        elif args.scenario == "file":
            # smtplib only takes str/bytes: the whole message is held in memory.
            s.sendmail(payload.SENDER, RCPTS, data.read_bytes())
        else:
            for raw in data:
                s.sendmail(payload.SENDER, RCPTS, raw)


def _smtplib_threads(args: argparse.Namespace, data: list[bytes]) -> None:
    """One thread per connection, each taking the next message from one shared queue."""
    import queue
    import threading

    todo: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for raw in data:
        todo.put(raw)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with smtplib.SMTP(args.host, args.port, local_hostname=LOCAL_HOSTNAME) as s:
                s.ehlo()
                while True:
                    try:
                        raw = todo.get_nowait()
                    except queue.Empty:
                        return
                    s.sendmail(payload.SENDER, RCPTS, raw)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# --- aiosmtplib (asyncio) -------------------------------------------------------------------


async def _aiosmtplib_tasks(args: argparse.Namespace, data: list[bytes]) -> None:
    """One task per connection, each taking the next message from one shared queue."""
    import aiosmtplib

    todo: asyncio.Queue[bytes] = asyncio.Queue()
    for raw in data:
        todo.put_nowait(raw)

    async def worker() -> None:
        async with aiosmtplib.SMTP(
            hostname=args.host, port=args.port, start_tls=False, local_hostname=LOCAL_HOSTNAME
        ) as s:
            while True:
                try:
                    raw = todo.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await s.sendmail(payload.SENDER, RCPTS, raw)

    await asyncio.gather(*(worker() for _ in range(args.connections)))


async def _aiosmtplib(args: argparse.Namespace, data: Any) -> None:
    import aiosmtplib

    if args.scenario in MULTI:
        await _aiosmtplib_tasks(args, data)
        return
    if args.scenario == "tls":
        ctx = client_context(args.cafile)
        for _ in range(args.count):
            async with aiosmtplib.SMTP(
                hostname=args.host,
                port=args.port,
                start_tls=True,
                tls_context=ctx,
                username=args.user,
                password=args.password,
                local_hostname=LOCAL_HOSTNAME,
            ) as s:
                await s.sendmail(payload.SENDER, RCPTS, data)
        return
    async with aiosmtplib.SMTP(
        hostname=args.host, port=args.port, start_tls=False, local_hostname=LOCAL_HOSTNAME
    ) as s:
        if args.scenario == "emailmessage":
            for msg in data:
                await s.send_message(msg)
        elif args.scenario == "file":
            # aiosmtplib only takes str/bytes: the whole message is held in memory.
            await s.sendmail(payload.SENDER, RCPTS, data.read_bytes())
        else:
            for raw in data:
                await s.sendmail(payload.SENDER, RCPTS, raw)


def run_aiosmtplib(args: argparse.Namespace, data: Any) -> None:
    """One ``aiosmtplib.SMTP`` connection reused for every message (no pipelining exists)."""
    asyncio.run(_aiosmtplib(args, data))


# --- trio_smtp ------------------------------------------------------------------------------


async def _trio_smtp(args: argparse.Namespace, data: Any) -> None:
    from trio_smtp import Security, SmtpClient

    send_any: Any  # file objects are accepted per issue 5; the stub's hint may lag behind
    if args.scenario == "tls":
        ctx = client_context(args.cafile)
        for _ in range(args.count):
            async with SmtpClient(
                args.host,
                args.port,
                security=Security.STARTTLS,
                credentials=(args.user, args.password),
                ssl_context=ctx,
                local_hostname=LOCAL_HOSTNAME,
            ) as c:
                await c.send(data, sender=payload.SENDER, recipients=RCPTS)
        return
    async with SmtpClient(
        args.host, args.port, security=Security.NONE, local_hostname=LOCAL_HOSTNAME
    ) as c:
        if args.scenario == "emailmessage":
            for msg in data:
                await c.send(msg)
        elif args.scenario == "file":
            send_any = c.send
            with data.open("rb") as f:  # streamed by the client, never held whole
                await send_any(f, sender=payload.SENDER, recipients=RCPTS)
        else:
            for raw in data:
                await c.send(raw, sender=payload.SENDER, recipients=RCPTS)


async def _trio_smtp_many(args: argparse.Namespace, data: Any) -> None:
    from trio_smtp import OutgoingMessage, Security, SendResult, SmtpClient

    items = [OutgoingMessage(raw, sender=payload.SENDER, recipients=RCPTS) for raw in data]
    async with SmtpClient(
        args.host, args.port, security=Security.NONE, local_hostname=LOCAL_HOSTNAME
    ) as c:
        outcomes = await c.send_many(items)
    failed = [o for o in outcomes if not isinstance(o, SendResult)]
    if failed:
        raise RuntimeError(f"{len(failed)} message(s) failed, first: {failed[0]!r}")


def _check_outcomes(outcomes: list[Any]) -> None:
    from trio_smtp import SendResult

    failed = [o for o in outcomes if not isinstance(o, SendResult)]
    if failed:
        raise RuntimeError(f"{len(failed)} message(s) failed, first: {failed[0]!r}")


async def _trio_smtp_pool(args: argparse.Namespace, data: Any) -> None:
    from trio_smtp import OutgoingMessage, Security, SmtpPool

    if args.scenario == "tls":
        await _trio_smtp_pool_tls(args, data)
        return
    items = [OutgoingMessage(raw, sender=payload.SENDER, recipients=RCPTS) for raw in data]
    # No cap on messages per connection: every client keeps its connections for the run,
    # as the peers do (the default cap, 100, reconnects: ~2 round trips per 100 messages).
    async with SmtpPool(
        args.host,
        args.port,
        max_connections=args.connections,
        max_messages_per_connection=None,
        security=Security.NONE,
        local_hostname=LOCAL_HOSTNAME,
    ) as pool:
        outcomes = await pool.send_many(items)
    _check_outcomes(outcomes)


async def _trio_smtp_pool_tls(args: argparse.Namespace, data: bytes) -> None:
    """The session scenario through a pool that reconnects for every message (one
    connection at a time, one message per connection): each connection after the first
    resumes the TLS session of the one before (docs/howto/pool.rst)."""
    from trio_smtp import Security, SmtpPool

    ctx = client_context(args.cafile)
    async with SmtpPool(
        args.host,
        args.port,
        max_connections=1,
        max_messages_per_connection=1,
        security=Security.STARTTLS,
        credentials=(args.user, args.password),
        ssl_context=ctx,
        local_hostname=LOCAL_HOSTNAME,
    ) as pool:
        for _ in range(args.count):
            await pool.send(data, sender=payload.SENDER, recipients=RCPTS)
    # OpenSSL's client-side count of sessions resumed: shows resumption really happened.
    EXTRA["tls_sessions_resumed"] = ctx.session_stats()["hits"]


async def _trio_smtp_pool_send(args: argparse.Namespace, data: Any) -> None:
    """``await pool.send()`` from ``--connections`` tasks sharing one iterator."""
    import trio

    from trio_smtp import Security, SmtpPool

    todo = iter(data)
    async with SmtpPool(
        args.host,
        args.port,
        max_connections=args.connections,
        max_messages_per_connection=None,
        security=Security.NONE,
        local_hostname=LOCAL_HOSTNAME,
    ) as pool:

        async def worker() -> None:
            for raw in todo:
                await pool.send(raw, sender=payload.SENDER, recipients=RCPTS)

        async with trio.open_nursery() as nursery:
            for _ in range(args.connections):
                nursery.start_soon(worker)


async def _trio_smtp_clients(args: argparse.Namespace, data: Any) -> None:
    """``--connections`` hand-made SmtpClients, each doing ``send_many`` on its share."""
    import trio

    from trio_smtp import OutgoingMessage, Security, SmtpClient

    items = [OutgoingMessage(raw, sender=payload.SENDER, recipients=RCPTS) for raw in data]
    outcomes: list[Any] = []

    async def one(share: list[Any]) -> None:
        async with SmtpClient(
            args.host, args.port, security=Security.NONE, local_hostname=LOCAL_HOSTNAME
        ) as c:
            outcomes.extend(await c.send_many(share))

    async with trio.open_nursery() as nursery:
        for k in range(args.connections):
            nursery.start_soon(one, items[k :: args.connections])
    _check_outcomes(outcomes)


def run_trio_smtp_pool(args: argparse.Namespace, data: Any) -> None:
    """``SmtpPool.send_many`` over ``--connections`` connections (``tls``: a reconnecting
    pool of one connection that resumes TLS sessions)."""
    import trio

    trio.run(_trio_smtp_pool, args, data)


def run_trio_smtp_pool_send(args: argparse.Namespace, data: Any) -> None:
    """``await SmtpPool.send()`` from ``--connections`` tasks."""
    import trio

    trio.run(_trio_smtp_pool_send, args, data)


def run_trio_smtp_clients(args: argparse.Namespace, data: Any) -> None:
    """``--connections`` SmtpClients doing ``send_many`` (the pool's hand-made reference)."""
    import trio

    trio.run(_trio_smtp_clients, args, data)


def run_trio_smtp_many(args: argparse.Namespace, data: Any) -> None:
    """``SmtpClient.send_many``: every message in one call, pipelined across messages."""
    import trio

    trio.run(_trio_smtp_many, args, data)


def run_trio_smtp(args: argparse.Namespace, data: Any) -> None:
    """One ``SmtpClient`` (one connection) for every message."""
    import trio

    trio.run(_trio_smtp, args, data)


CLIENTS: dict[str, Callable[[argparse.Namespace, Any], None]] = {
    "trio_smtp": run_trio_smtp,
    "trio_smtp_many": run_trio_smtp_many,
    "trio_smtp_pool": run_trio_smtp_pool,
    "trio_smtp_pool_send": run_trio_smtp_pool_send,
    "trio_smtp_clients": run_trio_smtp_clients,
    "aiosmtplib": run_aiosmtplib,
    "smtplib": run_smtplib,
}


def _import_all(package: Any) -> None:
    """Import every module of ``package`` but its testing server and command line.

    trio_smtp's ``__init__`` imports its classes lazily (on first use), and some modules are
    imported inside functions: left alone, that happens inside the clock, and where
    ``PYTHONDONTWRITEBYTECODE`` is set (no ``.pyc`` files) each worker would also compile
    them there, some 0.1 s that no other client pays (aiosmtplib imports everything at once,
    from compiled files).  Optional extras that are not installed are skipped.
    """
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if ".testing" in info.name or "_cli" in info.name or "__main__" in info.name:
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:
            pass
    for name in getattr(package, "__all__", ()):
        getattr(package, name)  # the lazy attributes themselves


def _preload(client: str) -> None:
    """Import the client's modules before the RSS baseline, so imports are not 'growth'."""
    if client.startswith("trio_smtp"):
        import trio  # noqa: F401

        import trio_smtp

        _import_all(trio_smtp)
        # Which checkout was measured (bench/run.py --compare-with sets PYTHONPATH).
        EXTRA["trio_smtp_from"] = str(Path(trio_smtp.__file__).resolve().parent.parent)
    elif client == "aiosmtplib":
        import aiosmtplib  # noqa: F401


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run one client on one scenario; return timings and memory."""
    _preload(args.client)
    data = inputs(args)
    gc.collect()
    rss_before = maxrss_kib()
    start, cpu_start = time.perf_counter(), time.process_time()
    CLIENTS[args.client](args, data)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    rss_after = maxrss_kib()
    return {
        "ok": True,
        "seconds": seconds,
        # The client's own CPU (all threads): steadier than the wall clock on a busy machine.
        "cpu_seconds": cpu_seconds,
        "maxrss_before_kib": rss_before,
        "maxrss_after_kib": rss_after,
        "rss_growth_kib": rss_after - rss_before,
        **EXTRA,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("client", choices=sorted(CLIENTS))
    p.add_argument("scenario")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--connections", type=int, default=1, help="many-connection scenarios")
    p.add_argument("--file")
    p.add_argument("--cafile")
    p.add_argument("--user")
    p.add_argument("--password")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        result = measure(args)
    except BaseException as exc:  # reported to the parent, which shows it in the table
        traceback.print_exc(file=sys.stderr)
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
