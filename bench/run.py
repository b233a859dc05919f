"""trio_smtp benchmark: trio_smtp against aiosmtplib, smtplib and Postfix's smtp-source.

Usage::

    python bench/run.py                    # full run, 5 interleaved rounds
    python bench/run.py --quick            # smoke test: fewer messages, 2 rounds
    python bench/run.py --only small,large --rounds 3 --json results.json --check

Every measurement runs in a fresh subprocess (bench/_workers.py, or smtp-source itself), so
peak RSS is per client and no client shares an interpreter with another. Rounds are
interleaved (round 1 runs every client on every scenario, then round 2, ... and the client
order rotates each round) so background load hits every client alike; the table shows the
median over rounds. Everything runs on 127.0.0.1 and stops by itself: each subprocess has a
deadline, and the servers are stopped on the way out.

Scenarios 1-4 talk to Postfix's smtp-sink (see bench/_sink.py); scenario 5 talks to
trio_smtp's own testing server (STARTTLS + AUTH), run in a separate process (bench/_server.py).
The many-connection scenarios (issue 12) use 8 connections per client: ``many`` on loopback
to smtp-sink, ``long`` and ``long_send`` through a delay proxy (bench/_delay.py, 5 ms each
way) to smtp-sink, ``long_chunking`` through the proxy to the testing server (CHUNKING).

``--compare-with OTHER_CHECKOUT`` measures trio_smtp only, twice per round: with this
checkout's trio_smtp and with OTHER_CHECKOUT's (PYTHONPATH), alternately, and reports
this / other for each scenario (issue 11: every scenario within 5%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _payload as payload  # noqa: E402
import _report as report  # noqa: E402
from _sink import SMTP_SOURCE, Sink, ensure_postfix  # noqa: E402

MIB = payload.MIB
PY_CLIENTS = ("trio_smtp", "aiosmtplib", "smtplib")
ALL_CLIENTS = (*PY_CLIENTS, "smtp-source")
#: trio_smtp's bulk API (SmtpClient.send_many), measured next to the plain send loop.
MANY = "trio_smtp_many"
#: SmtpPool.send_many (tls: a pool that reconnects for every session, resuming TLS).
POOL = "trio_smtp_pool"
#: await SmtpPool.send() from one task per connection.
POOL_SEND = "trio_smtp_pool_send"
#: Hand-made SmtpClients, one per connection, each doing send_many (the pool's reference).
CLIENTS = "trio_smtp_clients"
TRIO_CLIENTS = ("trio_smtp", MANY, POOL, POOL_SEND, CLIENTS)
#: The suffix of a trio_smtp client run from the --compare-with checkout.
BEFORE = "@before"


@dataclass
class Scenario:
    """One benchmark scenario: what is sent, by whom, and how it is scored."""

    name: str
    title: str
    unit: str
    count: int
    size: int
    clients: tuple[str, ...]
    quick_count: int
    quick_size: int | None = None
    higher_is_better: bool = True
    connections: int = 1  # per client (the many-connection scenarios: 8)
    link: str = "loopback"  # or "long": through the delay proxy
    server: str = "sink"  # or "chunking" (the testing server, plain) or "tls"

    def metric(self, result: dict[str, Any]) -> float:
        """The figure shown in the table for one measurement."""
        if self.name == "file":
            return float(result["rss_growth_kib"]) / 1024
        if self.name == "large":
            return self.count * self.size / MIB / float(result["seconds"])
        return self.count / float(result["seconds"])


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("small", "1 KiB messages, pre-serialised bytes, one connection",
                 "msg/s", 3000, 1024, (*ALL_CLIENTS, MANY), quick_count=300),
        Scenario("large", "10 MiB messages, pre-serialised bytes, one connection",
                 "MiB/s", 10, 10 * MIB, ALL_CLIENTS, quick_count=3),
        Scenario("emailmessage", "EmailMessage objects (1 KiB text), serialisation included",
                 "msg/s", 1000, 1024, PY_CLIENTS, quick_count=200),
        Scenario("file", "one message from a file: peak RSS growth of the client process",
                 "MiB", 1, 200 * MIB, ALL_CLIENTS, quick_count=1, quick_size=64 * MIB,
                 higher_is_better=False),
        Scenario("tls", "sessions: connect, STARTTLS, AUTH PLAIN, one 1 KiB message, QUIT",
                 "sessions/s", 200, 1024, ("trio_smtp", POOL, "aiosmtplib"), quick_count=20,
                 server="tls"),
        Scenario("long", "long link (5 ms each way), 8 connections, smtp-sink (no CHUNKING)",
                 "msg/s", 4000, 1024, (POOL, CLIENTS, "aiosmtplib", "smtplib"),
                 quick_count=400, connections=8, link="long"),
        Scenario("long_chunking", "long link (5 ms each way), ONE connection, CHUNKING server",
                 "msg/s", 1000, 1024, (MANY, POOL), quick_count=100, link="long",
                 server="chunking"),
        Scenario("many", "loopback, 8 connections, smtp-sink",
                 "msg/s", 12000, 1024, (POOL, CLIENTS, "aiosmtplib", "smtplib"),
                 quick_count=1200, connections=8),
        Scenario("long_send", "long link (5 ms each way), await pool.send() from 8 tasks",
                 "msg/s", 2000, 1024, (POOL_SEND, "aiosmtplib"), quick_count=200,
                 connections=8, link="long"),
    ]
}  # fmt: skip
#: The pseudo-client whose figure is computed, not measured: one round trip per message on
#: each connection (connections / RTT), for the scenarios on the long link.
LIMIT = report.LIMIT


@dataclass
class Cell:
    """The measurements of one client on one scenario, over all rounds."""

    values: list[float] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Servers:
    """The servers a run needs, started once and shared by every round."""

    sink: Sink | None = None
    tls: dict[str, Any] | None = None
    tls_proc: subprocess.Popen[bytes] | None = None
    tls_received: int | None = None  # messages the testing server got, read at shutdown
    big_file: Path | None = None
    chunking: dict[str, Any] | None = None  # the testing server without TLS (CHUNKING)
    chunking_proc: subprocess.Popen[bytes] | None = None
    chunking_received: int | None = None
    #: The delay proxies, by the server behind them ("sink", "chunking").
    proxies: dict[str, tuple[subprocess.Popen[bytes], dict[str, Any]]] = field(default_factory=dict)
    lateness: dict[str, Any] = field(default_factory=dict)  # each proxy's, at shutdown


def run_child(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str, str, float, int]:
    """Run ``cmd``; return (status, stdout, stderr, wall seconds, peak RSS KiB of the child).

    ``os.wait4`` gives the child's own rusage (``RUSAGE_CHILDREN`` would mix all children).
    """
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=env)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        assert proc.stderr is not None
        err = proc.stderr.read()  # drained so a chatty child never blocks on a full pipe
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stderr.close()
        out.seek(0)
        text = out.read().decode(errors="replace")
    return proc.returncode, text, err.decode(errors="replace"), seconds, usage.ru_maxrss


def worker_command(client: str, sc: Scenario, args: argparse.Namespace, srv: Servers) -> list[str]:
    """The command line of one Python-client measurement."""
    cmd = [sys.executable, str(HERE / "_workers.py"), client.removesuffix(BEFORE), sc.name]
    cmd += ["--count", str(args.counts[sc.name]), "--size", str(args.sizes[sc.name])]
    cmd += ["--connections", str(sc.connections)]
    if sc.server == "tls":
        assert srv.tls is not None
        t = srv.tls
        cmd += ["--host", t["host"], "--port", str(t["port"]), "--cafile", t["cafile"]]
        cmd += ["--user", t["user"], "--password", t["password"]]
    elif sc.link == "long":
        proxy = srv.proxies[sc.server][1]
        cmd += ["--host", proxy["host"], "--port", str(proxy["port"])]
    elif sc.server == "chunking":
        assert srv.chunking is not None
        cmd += ["--host", srv.chunking["host"], "--port", str(srv.chunking["port"])]
    else:
        assert srv.sink is not None
        cmd += ["--host", srv.sink.host, "--port", str(srv.sink.port)]
    if sc.name == "file":
        cmd += ["--file", str(srv.big_file)]
    return cmd


def source_command(sc: Scenario, args: argparse.Namespace, srv: Servers) -> list[str]:
    """smtp-source: one session (-s 1), every message on it (-d), ``-l`` bytes of payload."""
    assert srv.sink is not None
    return [
        SMTP_SOURCE, "-d", "-s", "1",
        "-m", str(args.counts[sc.name]), "-l", str(args.sizes[sc.name]),
        "-M", "bench.client", "-f", payload.SENDER, "-t", payload.RECIPIENT,
        f"{srv.sink.host}:{srv.sink.port}",
    ]  # fmt: skip


def measure(client: str, sc: Scenario, args: argparse.Namespace, srv: Servers) -> dict[str, Any]:
    """One measurement; raises RuntimeError with a readable reason when it failed."""
    count = args.counts[sc.name]
    before = srv.sink.messages if srv.sink is not None else 0
    env = None
    if client == "smtp-source":
        cmd = source_command(sc, args, srv)
    else:
        cmd = worker_command(client, sc, args, srv)
        if args.compare_with is not None and client.removesuffix(BEFORE) in TRIO_CLIENTS:
            # Which trio_smtp the worker imports: this checkout's, or the other one's.
            root = args.compare_with if client.endswith(BEFORE) else HERE.parent
            env = dict(os.environ, PYTHONPATH=str(root))
    status, out, err, seconds, maxrss = run_child(cmd, args.timeout, env)
    if client == "smtp-source":
        if status != 0:
            raise RuntimeError(f"smtp-source exited {status}: {(out + err).strip()[-300:]}")
        # A C program: its whole peak RSS is reported (its baseline is a few hundred KiB).
        result = {"ok": True, "seconds": seconds, "rss_growth_kib": maxrss}
    else:
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise RuntimeError(f"exit {status}: {(out + err).strip()[-300:]}") from None
        if not result.get("ok"):
            raise RuntimeError(result.get("error", "failed"))
    result["child_maxrss_kib"] = maxrss
    if sc.server == "sink" and srv.sink is not None:
        got = srv.sink.wait_messages(before + count) - before
        if got != count:
            raise RuntimeError(f"smtp-sink received {got} of {count} messages")
    return result


def start_helper(cmd: list[str]) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start a helper process that prints its address as one JSON line once it listens,
    and stops when its stdin is closed."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints its address once it listens
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"{cmd[1]} exited with status {proc.returncode}")
    return proc, json.loads(line)


def start_tls_server(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start trio_smtp's testing server (STARTTLS + AUTH) in its own process."""
    return start_helper([sys.executable, str(HERE / "_server.py"), "--cafile", str(tmp / "ca.pem")])


def stop_helper(proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    """Close a helper's stdin, read its last JSON line, wait for it (kill it if it hangs)."""
    result = None
    if proc.stdin is not None:
        proc.stdin.close()
    if proc.stdout is not None:
        last = proc.stdout.readline()
        result = json.loads(last) if last else None
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return result


def start_long_link(args: argparse.Namespace, srv: Servers) -> None:
    """The servers behind the delay proxy, and one proxy in front of each."""
    wanted = {SCENARIOS[n].server for n in args.scenarios if SCENARIOS[n].link == "long"}
    if "chunking" in wanted or "chunking" in {SCENARIOS[n].server for n in args.scenarios}:
        srv.chunking_proc, srv.chunking = start_helper(
            [sys.executable, str(HERE / "_server.py"), "--plain"]
        )
    for server in sorted(wanted):
        if server == "sink":
            assert srv.sink is not None
            target = f"{srv.sink.host}:{srv.sink.port}"
        else:
            assert srv.chunking is not None
            target = f"{srv.chunking['host']}:{srv.chunking['port']}"
        cmd = [sys.executable, str(HERE / "_delay.py"), "--target", target]
        srv.proxies[server] = start_helper([*cmd, "--delay", str(args.delay)])


def prepare(args: argparse.Namespace, srv: Servers, tmp: Path) -> None:
    """Start what the selected scenarios need; a failure disables only those scenarios."""
    if any(SCENARIOS[n].server == "sink" for n in args.scenarios):
        ensure_postfix()
        srv.sink = Sink()
    start_long_link(args, srv)
    if "file" in args.scenarios:
        srv.big_file = tmp / "big.eml"
        with srv.big_file.open("wb") as f:
            payload.write_message_file(f, args.sizes["file"])
    if "tls" in args.scenarios:
        try:
            srv.tls_proc, srv.tls = start_tls_server(tmp)
        except Exception as exc:  # e.g. the testing server has not landed yet
            print(f"tls scenario skipped: {exc}", file=sys.stderr)
            args.scenarios.remove("tls")


def shutdown(srv: Servers) -> None:
    """Stop the servers (always runs, also on errors and Ctrl-C)."""
    for server, (proc, _) in srv.proxies.items():
        srv.lateness[server] = (stop_helper(proc) or {}).get("lateness")
    if srv.sink is not None:
        srv.sink.close()
    if srv.tls_proc is not None:
        last = stop_helper(srv.tls_proc)
        srv.tls_received = last["messages"] if last else None
    if srv.chunking_proc is not None:
        last = stop_helper(srv.chunking_proc)
        srv.chunking_received = last["messages"] if last else None


def run_rounds(args: argparse.Namespace, srv: Servers) -> dict[str, dict[str, Cell]]:
    """Interleaved rounds; a client that fails a scenario is not retried on it."""
    cells = {n: {c: Cell() for c in args.clients_for[n]} for n in args.scenarios}
    for rnd in range(args.rounds):
        for name in list(args.scenarios):
            sc = SCENARIOS[name]
            clients = args.clients_for[name]
            k = rnd % len(clients)
            for client in clients[k:] + clients[:k]:  # rotate the order each round
                cell = cells[name][client]
                if cell.error is not None:
                    continue
                try:
                    result = measure(client, sc, args, srv)
                except RuntimeError as exc:
                    cell.error = str(exc)
                    print(f"  round {rnd + 1} {name:12} {client:14} ERROR {exc}", flush=True)
                    continue
                cell.raw.append(result)
                cell.values.append(sc.metric(result))
                print(
                    f"  round {rnd + 1} {name:12} {client:14} {cell.values[-1]:10.1f} {sc.unit}",
                    flush=True,
                )
    return cells


def check_server_count(
    args: argparse.Namespace, cells: dict[str, dict[str, Cell]], server: str, received: int | None
) -> None:
    """A testing server must have received every message the clients say they sent."""
    names = [n for n in cells if SCENARIOS[n].server == server]
    if not names or any(cell.error for n in names for cell in cells[n].values()):
        return  # a failed run may have delivered part of its messages
    expected = sum(len(cell.values) * args.counts[n] for n in names for cell in cells[n].values())
    if received != expected:
        print(f"WARNING: testing server ({server}) received {received} of {expected} messages")


def add_limits(args: argparse.Namespace, cells: dict[str, dict[str, Cell]]) -> None:
    """The one-round-trip-per-message limit of each long-link scenario, as a pseudo-client."""
    for name, row in cells.items():
        sc = SCENARIOS[name]
        if sc.link == "long" and row:
            row[LIMIT] = Cell(values=[sc.connections / (2 * args.delay)])


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 5, --quick 2)")
    p.add_argument("--quick", action="store_true", help="fewer messages and rounds (smoke test)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="comma-separated scenario and/or client names: "
        f"{', '.join(SCENARIOS)}; {', '.join([*ALL_CLIENTS, *TRIO_CLIENTS[1:]])}",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--rst", type=Path, help="also write the result tables as reStructuredText")
    p.add_argument("--check", action="store_true", help="exit 1 unless every target passes")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    p.add_argument(
        "--delay", type=float, default=0.005, help="one-way delay of the long link (seconds)"
    )
    p.add_argument(
        "--compare-with",
        type=Path,
        metavar="CHECKOUT",
        help="measure only trio_smtp, with this checkout's and with CHECKOUT's trio_smtp "
        "alternately, and report this / CHECKOUT (issue 11: within 5%%)",
    )
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    only = {x.strip() for item in args.only for x in item.split(",") if x.strip()}
    every_client = [*ALL_CLIENTS, *TRIO_CLIENTS[1:]]
    unknown = only - set(SCENARIOS) - set(every_client)
    if unknown:
        p.error(f"--only: unknown name(s) {', '.join(sorted(unknown))}")
    want_sc = [n for n in SCENARIOS if n in only] or list(SCENARIOS)
    want_cl = [c for c in every_client if c in only] or every_client
    if args.compare_with is not None:
        args.compare_with = args.compare_with.resolve()
        if not (args.compare_with / "trio_smtp" / "__init__.py").is_file():
            p.error(f"--compare-with: no trio_smtp package in {args.compare_with}")
        want_cl = [c for c in want_cl if c in TRIO_CLIENTS]
    args.clients_for = {n: [c for c in SCENARIOS[n].clients if c in want_cl] for n in want_sc}
    if args.compare_with is not None:  # each trio_smtp client twice: after, then before
        args.clients_for = {
            n: [x for c in cl for x in (c, c + BEFORE)] for n, cl in args.clients_for.items()
        }
    args.scenarios = [n for n in want_sc if args.clients_for[n]]
    args.counts = {n: s.quick_count if args.quick else s.count for n, s in SCENARIOS.items()}
    args.sizes = {
        n: (s.quick_size or s.size) if args.quick else s.size for n, s in SCENARIOS.items()
    }
    for n, s in SCENARIOS.items():  # the printed scale follows the quick settings
        s.count, s.size = args.counts[n], args.sizes[n]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    srv = Servers()
    host = report.machine()  # before the run: the commit measured, the load at the start
    print(report.machine_text(host), flush=True)
    with tempfile.TemporaryDirectory(prefix="trio-smtp-bench-") as tmpdir:
        try:
            prepare(args, srv, Path(tmpdir))
            if srv.sink is not None:
                print("server: " + " ".join(srv.sink.command), flush=True)
            cells = run_rounds(args, srv)
        finally:
            shutdown(srv)
    check_server_count(args, cells, "tls", srv.tls_received)
    check_server_count(args, cells, "chunking", srv.chunking_received)
    add_limits(args, cells)
    if srv.lateness:
        print(f"delay proxy lateness behind the due time: {srv.lateness}")
    if args.compare_with is not None:
        targets = report.compare_targets(cells)
    else:
        targets = report.evaluate_targets(cells)
    print(report.tables(SCENARIOS, cells, args.rounds, targets))
    command = " ".join(["python", *sys.argv])
    data = report.as_json(SCENARIOS, cells, args, targets, command, host)
    data["delay_proxy"] = {"one_way_delay": args.delay, "lateness": srv.lateness}
    if args.compare_with is not None:
        data["compare_with"] = str(args.compare_with)
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"results written to {args.json}")
    if args.rst is not None:
        args.rst.write_text(report.rst_results(data))
        print(f"tables written to {args.rst}")
    if args.check and report.failed(targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
