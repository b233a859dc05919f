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
                 "sessions/s", 200, 1024, ("trio_smtp", "aiosmtplib"), quick_count=20),
    ]
}  # fmt: skip


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


def run_child(cmd: list[str], timeout: float) -> tuple[int, str, str, float, int]:
    """Run ``cmd``; return (status, stdout, stderr, wall seconds, peak RSS KiB of the child).

    ``os.wait4`` gives the child's own rusage (``RUSAGE_CHILDREN`` would mix all children).
    """
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
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
    cmd = [sys.executable, str(HERE / "_workers.py"), client, sc.name]
    cmd += ["--count", str(args.counts[sc.name]), "--size", str(args.sizes[sc.name])]
    if sc.name == "tls":
        assert srv.tls is not None
        t = srv.tls
        cmd += ["--host", t["host"], "--port", str(t["port"]), "--cafile", t["cafile"]]
        cmd += ["--user", t["user"], "--password", t["password"]]
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
    if client == "smtp-source":
        cmd = source_command(sc, args, srv)
    else:
        cmd = worker_command(client, sc, args, srv)
    status, out, err, seconds, maxrss = run_child(cmd, args.timeout)
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
    if sc.name != "tls" and srv.sink is not None:
        got = srv.sink.wait_messages(before + count) - before
        if got != count:
            raise RuntimeError(f"smtp-sink received {got} of {count} messages")
    return result


def start_tls_server(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start trio_smtp's testing server (STARTTLS + AUTH) in its own process."""
    cmd = [sys.executable, str(HERE / "_server.py"), "--cafile", str(tmp / "ca.pem")]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints its address once it listens
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"testing server exited with status {proc.returncode}")
    return proc, json.loads(line)


def prepare(args: argparse.Namespace, srv: Servers, tmp: Path) -> None:
    """Start what the selected scenarios need; a failure disables only those scenarios."""
    if any(n != "tls" for n in args.scenarios):
        ensure_postfix()
        srv.sink = Sink()
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
    if srv.sink is not None:
        srv.sink.close()
    if srv.tls_proc is not None:
        p = srv.tls_proc
        if p.stdin is not None:
            p.stdin.close()  # the server exits when its stdin closes
        if p.stdout is not None:
            last = p.stdout.readline()
            srv.tls_received = json.loads(last)["messages"] if last else None
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()


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


def check_tls_count(args: argparse.Namespace, srv: Servers, row: dict[str, Cell]) -> None:
    """The testing server must have received one message per session the clients ran."""
    if not row or any(cell.error for cell in row.values()):
        return  # a failed run may have delivered part of its sessions
    expected = sum(len(cell.values) for cell in row.values()) * args.counts["tls"]
    if srv.tls_received != expected:
        print(f"WARNING: testing server received {srv.tls_received} of {expected} messages")


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
        f"{', '.join(SCENARIOS)}; {', '.join(ALL_CLIENTS)}",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--rst", type=Path, help="also write the result tables as reStructuredText")
    p.add_argument("--check", action="store_true", help="exit 1 unless every target passes")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    only = {x.strip() for item in args.only for x in item.split(",") if x.strip()}
    unknown = only - set(SCENARIOS) - set(ALL_CLIENTS) - {MANY}
    if unknown:
        p.error(f"--only: unknown name(s) {', '.join(sorted(unknown))}")
    want_sc = [n for n in SCENARIOS if n in only] or list(SCENARIOS)
    want_cl = [c for c in (*ALL_CLIENTS, MANY) if c in only] or [*ALL_CLIENTS, MANY]
    args.clients_for = {n: [c for c in SCENARIOS[n].clients if c in want_cl] for n in want_sc}
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
    check_tls_count(args, srv, cells.get("tls", {}))
    targets = report.evaluate_targets(cells)
    print(report.tables(SCENARIOS, cells, args.rounds, targets))
    command = " ".join(["python", *sys.argv])
    data = report.as_json(SCENARIOS, cells, args, targets, command, host)
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
