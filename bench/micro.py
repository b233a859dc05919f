"""Micro-benchmarks of the sans-I/O protocol hot paths (no sockets, no Trio).

Usage::

    python bench/micro.py              # every benchmark, a table of best-of-N figures
    python bench/micro.py --repeat 9   # more repetitions (best of 9)
    python bench/micro.py --only encoder,replies

Measures what a send costs in ``trio_smtp.protocol`` itself: the DATA encoder and the BDAT
line-end normaliser on 10 MiB of CRLF text (the shape of ``bench/_payload.py``, which is what
smtp-source sends) and of LF text, in the 256 KiB chunks the client writes; the body
inspector on a whole 10 MiB message (how ``prepare_message`` calls it); the reply parser on
the single-line replies of a pipelined transaction and on an EHLO reply; and MAIL + RCPT
serialisation.  Each figure is the best of ``--repeat`` runs, so background load on a shared
machine inflates it least; compare figures from the same machine only.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _payload as payload  # noqa: E402

from trio_smtp.protocol import (  # noqa: E402
    BodyInspector,
    DataEncoder,
    LineEndingNormalizer,
    Mail,
    Rcpt,
    ReplyParser,
)

MIB = 1024 * 1024
CHUNK = 256 * 1024  # trio_smtp/_io/data.py writes DATA in chunks of this size


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _chunks(data: bytes) -> list[memoryview]:
    view = memoryview(data)
    return [view[i : i + CHUNK] for i in range(0, len(view), CHUNK)]


def _texts() -> dict[str, bytes]:
    crlf = payload.headers(0) + payload.body(10 * MIB)
    lf = crlf.replace(b"\r\n", b"\n")
    # Prose: sentences with dots, some lines starting with ".", 8-bit characters.
    prose_line = "Grüße. A line of prose, as mail is written. It ends here.\r\n".encode()
    prose = (prose_line * 9 + b".starts with a dot\r\n") * (10 * MIB // (10 * len(prose_line)))
    return {"CRLF": crlf, "LF": lf, "prose CRLF": prose}


def bench_encoder(repeat: int) -> list[tuple[str, float, str]]:
    rows = []
    for name, text in _texts().items():
        chunks = _chunks(text)
        for cls in (DataEncoder, LineEndingNormalizer):

            def run(
                cls: type[LineEndingNormalizer] = cls, chunks: list[memoryview] = chunks
            ) -> None:
                encoder = cls()
                for chunk in chunks:
                    encoder.encode(chunk)
                encoder.finish()

            seconds = _best(run, repeat)
            rows.append((f"{cls.__name__} 10 MiB {name}", len(text) / MIB / seconds, "MiB/s"))
    return rows


def bench_inspector(repeat: int) -> list[tuple[str, float, str]]:
    rows = []
    for name, text in _texts().items():

        def run(text: bytes = text) -> None:
            BodyInspector().feed(text)

        seconds = _best(run, repeat)
        rows.append((f"BodyInspector 10 MiB {name}", len(text) / MIB / seconds, "MiB/s"))
    return rows


def bench_replies(repeat: int) -> list[tuple[str, float, str]]:
    # A pipelined transaction's replies as smtp-sink sends them: MAIL, RCPT, DATA arrive
    # together, then the reply to the end of data, whose queue id differs every time.
    group = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    n = 20_000
    finals = [b"250 2.0.0 Ok: queued as %X\r\n" % (0x4F2A1C + i) for i in range(n)]
    ehlo = (
        b"250-bench.sink\r\n250-PIPELINING\r\n250-SIZE 0\r\n250-ETRN\r\n250-STARTTLS\r\n"
        b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 CHUNKING\r\n"
    )

    def transactions() -> None:
        parser = ReplyParser()
        for final in finals:
            parser.receive_data(group)
            parser.next_reply()
            parser.next_reply()
            parser.next_reply()
            parser.receive_data(final)
            parser.next_reply()

    def ehlos() -> None:
        parser = ReplyParser()
        for _ in range(n // 4):
            parser.receive_data(ehlo)
            parser.next_reply()

    return [
        ("ReplyParser single-line replies", 4 * n / _best(transactions, repeat), "replies/s"),
        ("ReplyParser 9-line EHLO replies", n / 4 / _best(ehlos, repeat), "replies/s"),
    ]


def bench_commands(repeat: int) -> list[tuple[str, float, str]]:
    n = 20_000
    mail = Mail(payload.SENDER, size=1024, body="8BITMIME")
    rcpt = Rcpt(payload.RECIPIENT)

    def run() -> None:
        for _ in range(n):
            mail.to_bytes()
            rcpt.to_bytes()

    return [("Mail + Rcpt to_bytes", n / _best(run, repeat), "pairs/s")]


BENCHES = {
    "encoder": bench_encoder,
    "inspector": bench_inspector,
    "replies": bench_replies,
    "commands": bench_commands,
}


def main() -> None:
    """Run the selected benchmarks and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated names")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, best of {args.repeat}")
    print(f"{'benchmark':45} {'figure':>14}  unit")
    for name in args.only.split(","):
        for label, value, unit in BENCHES[name.strip()](args.repeat):
            print(f"{label:45} {value:14,.0f}  {unit}", flush=True)


if __name__ == "__main__":
    main()
