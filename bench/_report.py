"""Tables, targets and JSON for bench/run.py."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    from run import Cell, Scenario

#: Issue 6's targets: (scenario, peer, minimum ratio trio_smtp / peer).
RATIO_TARGETS = [
    ("small", "aiosmtplib", 3.0),
    ("small", "smtplib", 2.0),
    ("large", "aiosmtplib", 3.0),
    ("large", "smtplib", 2.0),
    ("large", "smtp-source", 0.7),
    ("emailmessage", "aiosmtplib", 1.3),
]
#: Issue 6: streaming a 200 MB message from a file grows the client's RSS by under 32 MB.
RSS_LIMIT_MIB = 32.0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _postfix_version() -> str:
    try:
        out = subprocess.run(
            ["/usr/sbin/postconf", "-d", "mail_version"], capture_output=True, text=True, timeout=10
        ).stdout
        return out.split("=", 1)[1].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def _git_commit() -> str:
    """The commit of the trio_smtp being measured ("+dirty" if the tree has changes)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "trio_smtp"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "loadavg": os.getloadavg(),
        "trio": _version("trio"),
        "trio-smtp": _version("trio-smtp"),
        "commit": _git_commit(),
        "aiosmtplib": _version("aiosmtplib"),
        "postfix": _postfix_version(),
    }


def machine_text(m: dict[str, Any]) -> str:
    return (
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['implementation']} {m['python']}, "
        f"Linux {m['kernel']}, load {m['loadavg'][0]:.2f}\n"
        f"versions: trio {m['trio']}, trio-smtp {m['trio-smtp']} ({m['commit']}), "
        f"aiosmtplib {m['aiosmtplib']}, postfix {m['postfix']}"
    )


def median(cell: Cell) -> float | None:
    return statistics.median(cell.values) if cell.values else None


def evaluate_targets(cells: dict[str, dict[str, Cell]]) -> list[dict[str, Any]]:
    """PASS/FAIL (or n/a when a side has no figure) for each target whose scenario ran."""
    out: list[dict[str, Any]] = []
    for name, peer, minimum in RATIO_TARGETS:
        if name not in cells or peer not in cells[name] or "trio_smtp" not in cells[name]:
            continue
        mine, theirs = median(cells[name]["trio_smtp"]), median(cells[name][peer])
        ratio = mine / theirs if mine is not None and theirs else None
        status = "n/a" if ratio is None else ("PASS" if ratio >= minimum else "FAIL")
        out.append(
            {"scenario": name, "peer": peer, "target": f">= {minimum}x", "value": ratio,
             "status": status}
        )  # fmt: skip
    if "file" in cells and "trio_smtp" in cells["file"]:
        growth = median(cells["file"]["trio_smtp"])
        status = "n/a" if growth is None else ("PASS" if growth < RSS_LIMIT_MIB else "FAIL")
        out.append(
            {"scenario": "file", "peer": None, "target": f"< {RSS_LIMIT_MIB:g} MiB",
             "value": growth, "status": status}
        )  # fmt: skip
    return out


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}"


def _scale(sc: Scenario) -> str:
    size = sc.size
    human = f"{size // 1048576} MiB" if size >= 1048576 else f"{size // 1024} KiB"
    return f"{sc.count:,} x {human}" if sc.name != "tls" else f"{sc.count:,} sessions"


def _target_for(targets: list[dict[str, Any]], name: str, peer: str | None) -> str:
    for t in targets:
        if t["scenario"] == name and t["peer"] == peer:
            return f"{t['target']} {t['status']}"
    return ""


def table(sc: Scenario, row: dict[str, Cell], rounds: int, targets: list[dict[str, Any]]) -> str:
    """One scenario's table: median, min, max, ratio of trio_smtp to each, target."""
    better = "higher" if sc.higher_is_better else "lower"
    lines = [
        f"[{sc.name}] {_scale(sc)}: {sc.title}",
        f"  {sc.unit}, median of {rounds} rounds, {better} is better; ratio = trio_smtp / client",
        f"  {'client':12}{'median':>11}{'min':>11}{'max':>11}{'ratio':>9}  target",
    ]
    mine = median(row["trio_smtp"]) if "trio_smtp" in row else None
    for client, cell in row.items():
        m = median(cell)
        if cell.error is not None and m is None:
            lines.append(f"  {client:12}  ERROR {cell.error[:90]}")
            continue
        ratio = f"{mine / m:.2f}x" if mine is not None and m and client != "trio_smtp" else ""
        target = _target_for(targets, sc.name, None if client == "trio_smtp" else client)
        lo, hi = (min(cell.values), max(cell.values)) if cell.values else (None, None)
        lines.append(f"  {client:12}{_fmt(m):>11}{_fmt(lo):>11}{_fmt(hi):>11}{ratio:>9}  {target}")
        if cell.error is not None:
            lines.append(f"  {'':12}  (then ERROR {cell.error[:80]})")
    return "\n".join(lines)


def tables(
    scenarios: dict[str, Scenario],
    cells: dict[str, dict[str, Cell]],
    rounds: int,
    targets: list[dict[str, Any]],
) -> str:
    parts = [table(scenarios[n], row, rounds, targets) for n, row in cells.items()]
    summary = ", ".join(
        f"{t['scenario']}{'/' + t['peer'] if t['peer'] else ''} {t['status']}" for t in targets
    )
    return "\n\n".join(["", *parts, f"targets: {summary or 'none evaluated'}"])


def as_json(
    scenarios: dict[str, Scenario],
    cells: dict[str, dict[str, Cell]],
    args: argparse.Namespace,
    targets: list[dict[str, Any]],
    command: str,
    host: dict[str, Any],
) -> dict[str, Any]:
    return {
        "command": command,
        "machine": host,
        "rounds": args.rounds,
        "quick": args.quick,
        "scenarios": {
            name: {
                "title": scenarios[name].title,
                "unit": scenarios[name].unit,
                "count": scenarios[name].count,
                "size": scenarios[name].size,
                "higher_is_better": scenarios[name].higher_is_better,
                "clients": {
                    client: {
                        "median": median(cell),
                        "values": cell.values,
                        "error": cell.error,
                        "raw": cell.raw,
                    }
                    for client, cell in row.items()
                },
            }
            for name, row in cells.items()
        },
        "targets": targets,
    }


def _rst_table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()

    return [rule, line(rows[0]), rule, *(line(r) for r in rows[1:]), rule]


def rst_results(data: dict[str, Any]) -> str:
    """The results of :func:`as_json` as reStructuredText (for docs/benchmarks.rst)."""
    m = data["machine"]
    out = [
        f"Measured with ``{data['command']}`` at commit ``{m['commit']}``, on {m['nproc']} "
        f"CPUs ({m['cpu']}), {m['implementation']} {m['python']}, Linux {m['kernel']}; "
        f"trio {m['trio']}, aiosmtplib {m['aiosmtplib']}, Postfix {m['postfix']}; "
        f"median of {data['rounds']} rounds; load average {m['loadavg'][0]:.2f} at the start.",
    ]
    targets = {(t["scenario"], t["peer"]): t for t in data["targets"]}
    for name, sc in data["scenarios"].items():
        clients = sc["clients"]
        mine = clients.get("trio_smtp", {}).get("median")
        better = "higher" if sc["higher_is_better"] else "lower"
        out += ["", f"**{name}** ({sc['count']:,} x {sc['size']:,} bytes): {sc['title']}, "
                f"{sc['unit']}, {better} is better.", ""]  # fmt: skip
        rows = [("Client", "Median", "Min - max", "trio_smtp / client", "Target")]
        for client, c in clients.items():
            med = c["median"]
            spread = f"{_fmt(min(c['values']))} - {_fmt(max(c['values']))}" if c["values"] else ""
            if c["error"] and med is None:
                spread = "error: " + c["error"][:70]
            ratio = f"{mine / med:.2f}x" if mine and med and client != "trio_smtp" else ""
            t = targets.get((name, None if client == "trio_smtp" else client))
            rows.append(
                (client, _fmt(med), spread, ratio, f"{t['target']}: {t['status']}" if t else "")
            )
        out += _rst_table(rows)
    return "\n".join(out) + "\n"
