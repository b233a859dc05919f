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

#: trio_smtp's rows (``client`` names in the results) and the API each one measures.  Every
#: variant gets its own ratio to each peer and its own PASS/FAIL; one is judged (below).
VARIANTS = {
    "trio_smtp": "SmtpClient.send",
    "trio_smtp_many": "SmtpClient.send_many",
    "trio_smtp_pool": "SmtpPool.send_many",
    "trio_smtp_pool_send": "SmtpPool.send from 8 tasks",
    "trio_smtp_clients": "8 SmtpClients doing send_many",
}
#: The variant judged against a scenario's targets (``--check``), when it ran: for small
#: messages the best documented bulk API, send_many; on many connections the pool; for
#: sessions the pool that reconnects and resumes TLS; ``trio_smtp`` (send) everywhere else.
JUDGED = {
    "small": "trio_smtp_many",
    "long": "trio_smtp_pool",
    "long_chunking": "trio_smtp_many",
    "many": "trio_smtp_pool",
    "long_send": "trio_smtp_pool_send",
    "tls": "trio_smtp_pool",
}
#: The pseudo-client of the long-link scenarios: one round trip per message on each
#: connection (connections / RTT), computed from the proxy's delay, not measured.
LIMIT = "limit"
#: Issues 6 and 12's targets: (scenario, peer, minimum ratio trio_smtp / peer).
RATIO_TARGETS = [
    ("small", "aiosmtplib", 3.0),
    ("small", "smtplib", 2.0),
    ("large", "aiosmtplib", 3.0),
    ("large", "smtplib", 2.0),
    ("large", "smtp-source", 0.7),
    ("emailmessage", "aiosmtplib", 1.3),
    ("long", "aiosmtplib", 4.5),
    ("long", LIMIT, 0.9),
    ("long_chunking", LIMIT, 3.0),
    ("many", "aiosmtplib", 2.0),
    ("many", "smtplib", 1.2),
    ("long_send", "aiosmtplib", 2.0),
    ("tls", "aiosmtplib", 1.5),
]
#: Issue 11: with --compare-with, every scenario of this checkout within 5% of the other.
COMPARE_MINIMUM = 0.95
BEFORE = "@before"
#: Issue 6: streaming a 200 MB message from a file grows the client's RSS by under 32 MB.
RSS_LIMIT_MIB = 32.0


def describe(scenario: str, variant: str) -> str:
    """What a trio_smtp variant does in a scenario."""
    if scenario == "tls" and variant == "trio_smtp_pool":
        return "an SmtpPool reconnecting for each session, resuming TLS"
    if scenario == "tls" and variant == "trio_smtp":
        return "a new SmtpClient per session"
    return VARIANTS[variant]


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


def judged_variant(name: str, row: dict[str, Cell]) -> str | None:
    """The trio_smtp variant judged on scenario ``name``: its preferred one if it ran,
    else plain ``trio_smtp``; None when neither ran."""
    for variant in (JUDGED.get(name, "trio_smtp"), "trio_smtp"):
        if variant in row:
            return variant
    return None


def evaluate_targets(cells: dict[str, dict[str, Cell]]) -> list[dict[str, Any]]:
    """PASS/FAIL (or n/a when a side has no figure) for each target whose scenario ran, once
    per trio_smtp variant that ran; ``judged`` marks the entries ``--check`` counts."""
    out: list[dict[str, Any]] = []
    for name, peer, minimum in RATIO_TARGETS:
        row = cells.get(name, {})
        if peer not in row:
            continue
        judged = judged_variant(name, row)
        for variant in (v for v in VARIANTS if v in row):
            mine, theirs = median(row[variant]), median(row[peer])
            ratio = mine / theirs if mine is not None and theirs else None
            status = "n/a" if ratio is None else ("PASS" if ratio >= minimum else "FAIL")
            out.append(
                {"scenario": name, "peer": peer, "variant": variant,
                 "judged": variant == judged, "target": f">= {minimum}x", "value": ratio,
                 "status": status}
            )  # fmt: skip
    if "file" in cells and "trio_smtp" in cells["file"]:
        growth = median(cells["file"]["trio_smtp"])
        status = "n/a" if growth is None else ("PASS" if growth < RSS_LIMIT_MIB else "FAIL")
        out.append(
            {"scenario": "file", "peer": None, "variant": "trio_smtp", "judged": True,
             "target": f"< {RSS_LIMIT_MIB:g} MiB", "value": growth, "status": status}
        )  # fmt: skip
    return out


def compare_targets(cells: dict[str, dict[str, Cell]]) -> list[dict[str, Any]]:
    """``--compare-with``: each trio_smtp variant against its own run from the other
    checkout (``VARIANT@before``), every one judged: this / other >= 0.95."""
    out: list[dict[str, Any]] = []
    for name, row in cells.items():
        for variant in (v for v in VARIANTS if v in row and v + BEFORE in row):
            mine, theirs = median(row[variant]), median(row[variant + BEFORE])
            ratio = mine / theirs if mine is not None and theirs else None
            if ratio is not None and not SCENARIO_HIGHER.get(name, True):
                ratio = 1 / ratio if ratio else None  # lower is better: before / after
            ok = ratio is not None and ratio >= COMPARE_MINIMUM
            out.append(
                {"scenario": name, "peer": variant + BEFORE, "variant": variant,
                 "judged": True, "target": f">= {COMPARE_MINIMUM}x",
                 "value": ratio, "status": "n/a" if ratio is None else
                 ("PASS" if ok else "FAIL"),
                 "cpu_value": _cpu_ratio(row[variant], row[variant + BEFORE])}
            )  # fmt: skip
    return out


def _cpu_ratio(after: Cell, before: Cell) -> float | None:
    """before / after of the clients' own CPU seconds (medians): above 1 when this checkout
    uses less CPU for the same work.  For information next to the wall-clock verdict."""
    cpu = [[r["cpu_seconds"] for r in c.raw if "cpu_seconds" in r] for c in (after, before)]
    if not cpu[0] or not cpu[1]:
        return None
    mine, theirs = statistics.median(cpu[0]), statistics.median(cpu[1])
    return theirs / mine if mine else None


#: Scenarios where lower is better (their compare ratio is inverted).
SCENARIO_HIGHER = {"file": False}


def failed(targets: list[dict[str, Any]]) -> bool:
    """True when a judged target did not pass (``--check``'s exit status)."""
    return any(t["judged"] and t["status"] != "PASS" for t in targets)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}"


def _scale(sc: Scenario) -> str:
    size = sc.size
    human = f"{size // 1048576} MiB" if size >= 1048576 else f"{size // 1024} KiB"
    scale = f"{sc.count:,} x {human}" if sc.name != "tls" else f"{sc.count:,} sessions"
    return scale if sc.connections == 1 else f"{scale}, {sc.connections} connections"


def _target(targets: list[dict[str, Any]], name: str, peer: str, variant: str) -> dict[str, Any]:
    for t in targets:
        if (t["scenario"], t["peer"], t["variant"]) == (name, peer, variant):
            return t
    return {}


def _ratio_cell(
    row: dict[str, Cell], targets: list[dict[str, Any]], name: str, peer: str, variant: str
) -> str:
    """``variant`` / ``peer`` (blank for a variant's own row), with its PASS/FAIL if any."""
    if peer in VARIANTS or (peer.endswith(BEFORE) and peer != variant + BEFORE):
        return ""  # --compare-with: only a variant against its own other-checkout run
    mine, theirs = median(row[variant]), median(row[peer])
    ratio = f"{mine / theirs:.2f}x" if mine is not None and theirs else "-"
    status = _target(targets, name, peer, variant).get("status")
    return f"{ratio} {status}" if status else ratio


def table(sc: Scenario, row: dict[str, Cell], rounds: int, targets: list[dict[str, Any]]) -> str:
    """One scenario's table: median, min, max, ratio of each trio_smtp variant to each peer
    (with PASS/FAIL), the target and which variant it judges."""
    better = "higher" if sc.higher_is_better else "lower"
    variants = [v for v in VARIANTS if v in row]
    judged = judged_variant(sc.name, row)
    width = {v: max(18, len(v) + 4) for v in variants}
    cw = max(15, *(len(c) + 2 for c in row))
    heads = "".join(f"{v + ' /':>{width[v]}}" for v in variants)
    lines = [
        f"[{sc.name}] {_scale(sc)}: {sc.title}",
        f"  {sc.unit}, median of {rounds} rounds, {better} is better; ratio = variant / client",
        f"  {'client':{cw}}{'median':>11}{'min':>11}{'max':>11}{heads}  target",
    ]
    peers = [c for c in row if c not in VARIANTS]
    for client, cell in ((c, row[c]) for c in (*variants, *peers)):
        m = median(cell)
        if cell.error is not None and m is None:
            lines.append(f"  {client:{cw}}  ERROR {cell.error[:90]}")
            continue
        ratios = "".join(
            f"{_ratio_cell(row, targets, sc.name, client, v):>{width[v]}}" for v in variants
        )
        lo, hi = (min(cell.values), max(cell.values)) if cell.values else (None, None)
        target = ""
        if client not in VARIANTS and judged and _target(targets, sc.name, client, judged):
            target = f"{_target(targets, sc.name, client, judged)['target']} on {judged}"
        elif client == "trio_smtp" and sc.name == "file":
            target = next((f"{t['target']} {t['status']}" for t in targets
                           if t["scenario"] == "file"), "")  # fmt: skip
        lines.append(
            f"  {client:{cw}}{_fmt(m):>11}{_fmt(lo):>11}{_fmt(hi):>11}{ratios}  {target}".rstrip()
        )
        if cell.error is not None:
            lines.append(f"  {'':{cw}}  (then ERROR {cell.error[:80]})")
    return "\n".join(lines)


def _summary(targets: list[dict[str, Any]]) -> list[str]:
    """The targets section: which variant each scenario is judged on, then every target
    with the judged variant's verdict first and the other variants' for information."""
    if not targets:
        return ["targets: none evaluated"]
    if any(t["peer"] and t["peer"].endswith(BEFORE) for t in targets):
        lines = [
            f"targets (issue 11): this checkout / the --compare-with checkout "
            f"(VARIANT{BEFORE}), >= {COMPARE_MINIMUM}x for every trio_smtp variant"
        ]
        for t in targets:
            where = f"{t['scenario']}/{t['variant']}"
            cpu = t.get("cpu_value")
            extra = f"  (client CPU, other / this: {cpu:.2f}x)" if cpu is not None else ""
            lines.append(f"  {where:36}{t['target']:>10}  {_value(t)} {t['status']}{extra}")
        return lines
    judged = {t["scenario"]: t["variant"] for t in targets if t["judged"]}
    lines = ["targets (issues 6, 11, 12), judged on: " + "; ".join(
        f"{name} by {variant} ({describe(name, variant)})" for name, variant in judged.items()
    )]  # fmt: skip
    if judged.get("small") == "trio_smtp_many":
        lines.append(
            "  small messages are judged on send_many, the documented bulk API"
            " (docs/howto/bulk.rst);\n  the send loop (trio_smtp) is shown for information"
        )
    elif "small" in judged:
        lines.append("  small: trio_smtp_many did not run, so the send loop is judged")
    for t in targets:
        if not t["judged"]:
            continue
        where = f"{t['scenario']}{'/' + t['peer'] if t['peer'] else ''}"
        others = [
            f"{o['variant']} {_value(o)} {o['status']}"
            for o in targets
            if not o["judged"] and (o["scenario"], o["peer"]) == (t["scenario"], t["peer"])
        ]
        extra = f"  (not judged: {', '.join(others)})" if others else ""
        lines.append(
            f"  {where:28}{t['target']:>10}  {t['variant']} {_value(t)} {t['status']}{extra}"
        )
    return lines


def _value(t: dict[str, Any]) -> str:
    if t["value"] is None:
        return "-"
    return f"{t['value']:.2f}x" if t["peer"] else f"{t['value']:.1f} MiB"


def tables(
    scenarios: dict[str, Scenario],
    cells: dict[str, dict[str, Cell]],
    rounds: int,
    targets: list[dict[str, Any]],
) -> str:
    parts = [table(scenarios[n], row, rounds, targets) for n, row in cells.items()]
    return "\n\n".join(["", *parts, "\n".join(_summary(targets))])


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
    proxy = data.get("delay_proxy") or {}
    for server, late in (proxy.get("lateness") or {}).items():
        if late and late.get("chunks"):
            out[0] += (
                f" Delay proxy ({server}): {proxy['one_way_delay'] * 1000:g} ms each way, "
                f"late behind it by {late['mean_us']:,.0f} us on average "
                f"(99th percentile {late['p99_us']:,.0f} us)."
            )
    if data.get("compare_with"):
        out[0] += (
            f" ``VARIANT{BEFORE}`` rows ran the trio_smtp of ``{data['compare_with']}``; "
            "the others this checkout's."
        )
    targets = {(t["scenario"], t["peer"], t["variant"]): t for t in data["targets"]}
    for name, sc in data["scenarios"].items():
        clients = sc["clients"]
        variants = [v for v in VARIANTS if v in clients]
        judged = next((t["variant"] for t in data["targets"]
                       if t["scenario"] == name and t["judged"]), None)  # fmt: skip
        better = "higher" if sc["higher_is_better"] else "lower"
        out += ["", f"**{name}** ({sc['count']:,} x {sc['size']:,} bytes): {sc['title']}, "
                f"{sc['unit']}, {better} is better.", ""]  # fmt: skip
        rows = [("Client", "Median", "Min - max", *(f"{v} / client" for v in variants), "Target")]
        ordered = [*variants, *(c for c in clients if c not in VARIANTS)]
        for client, c in ((k, clients[k]) for k in ordered):
            med = c["median"]
            spread = f"{_fmt(min(c['values']))} - {_fmt(max(c['values']))}" if c["values"] else ""
            if c["error"] and med is None:
                spread = "error: " + c["error"][:70]
            ratios = []
            for v in variants:
                mine = clients[v]["median"]
                t = targets.get((name, client, v))
                own = not client.endswith(BEFORE) or client == v + BEFORE
                mine = mine if own else None  # --compare-with: only against its own run
                ratio = f"{mine / med:.2f}x" if mine and med and client not in VARIANTS else ""
                ratios.append(f"{ratio} {t['status']}" if t and ratio else ratio)
            on = client.removesuffix(BEFORE) if client.endswith(BEFORE) else judged
            t = targets.get((name, None if client in VARIANTS else client, on or ""))
            target = ""
            if t and client not in VARIANTS:
                target = f"{t['target']} on {on}"
            elif t and client == judged:
                target = f"{t['target']}: {t['status']}"
            rows.append((client, _fmt(med), spread, *ratios, target))
        out += _rst_table(rows)
    return "\n".join(out) + "\n"
