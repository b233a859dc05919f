"""What ``import trio_smtp`` costs on top of Trio: the figures of docs/design.rst, "Import cost".

Usage::

    python bench/import_cost.py                # best of 15 fresh interpreters
    python bench/import_cost.py --runs 30 --no-bytecode

Each run is ``python -X importtime -c "import trio, ssl, email.message; import
trio_smtp._client.client"`` in a fresh interpreter; the script sums the self times of the
``trio_smtp.*`` rows, and separately of the modules neither Trio nor those stdlib modules
load (scramp, uuid, ...), and shows the best run and the per-module minima.
(``trio_smtp.SmtpClient`` through the lazy package gives the same figures, but
``-X importtime`` does not report ``importlib.import_module``, so ``trio_smtp._client.client``'s
own row would be missing.)  Bytecode is cached under a temporary ``PYTHONPYCACHEPREFIX``, as
an installed package has its ``.pyc`` files; ``--no-bytecode`` compiles every module from
source at each start instead.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

BASELINE = "import trio, ssl, email.message"
ROW = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")


def rows(statement: str, env: dict[str, str]) -> list[tuple[int, str]]:
    """(self microseconds, module) of every row ``-X importtime`` prints."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [(int(m[1]), m[2]) for m in map(ROW.match, result.stderr.splitlines()) if m]


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters; best shown")
    parser.add_argument("--no-bytecode", action="store_true", help="compile from source")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as cache:
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env["PYTHONPYCACHEPREFIX"] = cache
        statement = f"{BASELINE}; import trio_smtp._client.client"
        rows(statement, env)  # writes the bytecode cache
        baseline = {name for _, name in rows(BASELINE, env)}
        ours: list[int] = []
        others: list[int] = []
        minima: dict[str, int] = {}
        for _ in range(args.runs):
            found = [(t, n) for t, n in rows(statement, env) if n not in baseline]
            ours.append(sum(t for t, n in found if n.split(".")[0] == "trio_smtp"))
            others.append(sum(t for t, n in found if n.split(".")[0] != "trio_smtp"))
            for t, n in found:
                minima[n] = min(minima.get(n, t), t)
    print(f"trio_smtp.* self time: best {min(ours) / 1000:.1f} ms of {args.runs} runs")
    print(f"other modules Trio does not load: best {min(others) / 1000:.1f} ms")
    for name, t in sorted(minima.items(), key=lambda item: -item[1]):
        print(f"  {t / 1000:6.2f} ms  {name}")


if __name__ == "__main__":
    main()
