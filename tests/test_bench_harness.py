"""The benchmark harness's own moving parts (bench/): the delay proxy of the long-link
scenarios and the verdicts of ``--compare-with``.  The benchmarks themselves never run here."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio

BENCH = Path(__file__).resolve().parent.parent / "bench"
DELAY = 0.05  # one way: large enough to tell from loopback, small enough to keep the test short


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)
        # The client's end of file reached us through the proxy: close, which must reach it.


async def test_delay_proxy_delays_each_way_keeps_order_and_passes_end_of_file() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        cmd = [sys.executable, str(BENCH / "_delay.py"), "--target", f"127.0.0.1:{port}"]
        proc = await trio.lowlevel.open_process(
            [*cmd, "--delay", str(DELAY)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert proc.stdin is not None and proc.stdout is not None
        with trio.fail_after(30):
            first = b""
            while not first.endswith(b"\n"):
                first += await proc.stdout.receive_some(1)
            address = json.loads(first)
            stream = await trio.open_tcp_stream(address["host"], address["port"])
            sent = [b"%d," % i for i in range(50)]
            start = trio.current_time()
            for chunk in sent:  # separate writes, each its own chunk at the proxy
                await stream.send_all(chunk)
            await stream.send_eof()
            received = bytearray()
            while data := await stream.receive_some():  # until the echo server's close
                received += data
            elapsed = trio.current_time() - start
            await stream.aclose()
            await proc.stdin.aclose()  # the proxy stops and reports its lateness
            rest = bytearray()
            while tail := await proc.stdout.receive_some():
                rest += tail
            await proc.wait()
        nursery.cancel_scope.cancel()
    assert received == b"".join(sent)  # every byte, in order
    assert elapsed >= 2 * DELAY  # there and back, each delayed
    assert json.loads(rest)["lateness"]["chunks"] > 0
    assert proc.returncode == 0


def _report() -> tuple[Any, Any]:
    """bench/_report.py and bench/run.py (scripts, not a package: found by path)."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("_report"), importlib.import_module("run")
    finally:
        sys.path.remove(str(BENCH))


def test_compare_judges_each_variant_against_its_own_run_from_the_other_checkout() -> None:
    report, run = _report()
    cells = {
        "small": {
            "trio_smtp_many": run.Cell(values=[96.0, 100.0]),
            "trio_smtp_many@before": run.Cell(values=[100.0, 100.0]),
            "trio_smtp": run.Cell(values=[90.0]),
            "trio_smtp@before": run.Cell(values=[100.0]),
        },
        "file": {  # lower is better: 10% more memory is a 0.91x regression
            "trio_smtp": run.Cell(values=[1.1]),
            "trio_smtp@before": run.Cell(values=[1.0]),
        },
    }
    verdicts = {(t["scenario"], t["variant"]): t for t in report.compare_targets(cells)}
    assert verdicts[("small", "trio_smtp_many")]["status"] == "PASS"  # 0.98x
    assert verdicts[("small", "trio_smtp")]["status"] == "FAIL"  # 0.90x
    assert verdicts[("file", "trio_smtp")]["status"] == "FAIL"
    assert all(t["judged"] for t in verdicts.values())
    assert report.failed(list(verdicts.values()))
