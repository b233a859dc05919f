"""docs/howto/cli.rst shows what the CLI really prints: every console block marked with a
``.. cli-example:`` comment is run here, against the testing server, and compared.

A marked block holds ``$ command`` lines, each followed by what it prints (standard output
and standard error together, as a terminal shows them; ``...`` matches anything, as in a
doctest) and optionally ``$ echo $?`` and the exit status.  The marker configures the
server the block talks to, which the commands reach as ``127.0.0.1:8025``::

    .. cli-example: tls=starttls auth=alice:pw refuse='nobody@example.net 550 5.1.1 No user'

``tls`` is ``none``, ``starttls`` (its CA written to ``ca.pem`` in the working directory)
or ``implicit``; ``127.0.0.1:8026`` is a port where nothing listens.  Commands run as real
processes (``python -m trio_smtp``) in a temporary directory.
"""

from __future__ import annotations

import doctest
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from helpers.daemons import free_port

from trio_smtp.testing import Respond, SmtpServer

DOC = Path(__file__).resolve().parent.parent / "docs" / "howto" / "cli.rst"
DOC_PORT, CLOSED_PORT = "8025", "8026"


@dataclass
class Step:
    command: str
    output: str = ""
    status: int | None = None  # from a following `$ echo $?`


@dataclass
class Example:
    line: int
    options: dict[str, str]
    steps: list[Step] = field(default_factory=list)


def _block_after(lines: list[str], start: int) -> list[str]:
    """The indented body of the ``.. code-block:: console`` after line ``start``."""
    index = start + 1
    while not lines[index].startswith(".. code-block:: console"):
        assert not lines[index].strip() or lines[index].startswith(".."), lines[index]
        index += 1
    body: list[str] = []
    for line in lines[index + 1 :]:
        if line.strip() and not line.startswith("   "):
            break
        body.append(line[3:])
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    return body


def _steps(body: list[str]) -> list[Step]:
    steps: list[Step] = []
    pending = ""
    for line in body:
        if pending or line.startswith("$ "):
            text = line[2:] if not pending else line.strip()
            pending += text
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip() + " "
                continue
            if pending == "echo $?":
                steps[-1].status = -1  # the next line is the status
            else:
                steps.append(Step(pending))
            pending = ""
        elif steps and steps[-1].status == -1:
            steps[-1].status = int(line)
        else:
            steps[-1].output += line + "\n"
    return steps


def examples() -> list[Example]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    found = []
    for number, line in enumerate(lines):
        if line.startswith(".. cli-example:"):
            options = dict(item.split("=", 1) for item in shlex.split(line.partition(":")[2]))
            found.append(Example(number + 1, options, _steps(_block_after(lines, number))))
    return found


def server_for(options: dict[str, str]) -> SmtpServer:
    user, _, password = options.get("auth", "").partition(":")
    server = SmtpServer(
        tls=options.get("tls", "none"),
        credentials={user: password} if user else {},
    )
    if "refuse" in options:
        address, code, text = options["refuse"].split(" ", 2)
        server.on("RCPT", Respond(int(code), text), match=address)
    return server


async def run(step: Step, ports: dict[str, str], cwd: Path) -> tuple[str, int]:
    words = shlex.split(step.command)
    env = dict(os.environ)
    while "=" in words[0]:  # VAR=value before the command
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "trio-smtp", step.command
    argv = [sys.executable, "-m", "trio_smtp"]
    for word in words[1:]:
        for doc, real in ports.items():
            word = real if word == doc else word.replace(f"127.0.0.1:{doc}", f"127.0.0.1:{real}")
        argv.append(word)
    with trio.fail_after(60):
        proc = await trio.run_process(
            argv, cwd=cwd, env=env, capture_stdout=True, stderr=-2, check=False
        )  # stderr=-2 is subprocess.STDOUT: one stream, in the order a terminal shows it
    out = proc.stdout.decode()
    for doc, real in ports.items():
        out = out.replace(real, doc)
    return out, proc.returncode


EXAMPLES = examples()


def test_the_page_has_checked_examples() -> None:
    assert len(EXAMPLES) >= 5
    assert all(example.steps for example in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"cli.rst:{e.line}")
async def test_cli_rst_example(
    example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "q3.csv").write_text("quarter,total\nQ3,42\n")
    (tmp_path / "outbox").mkdir()  # the bulk example's messages, one to a refused address
    for number, to in enumerate(["a@example.net", "b@example.net", "c", "nobody"], start=1):
        to = to if "@" in to else f"{to}@example.net"
        message = f"From: me@example.org\r\nTo: {to}\r\nSubject: {number}\r\n\r\nHi\r\n"
        (tmp_path / "outbox" / f"{number:02}.eml").write_text(message)
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps usage lines to the terminal
    async with server_for(example.options) as server:
        if example.options.get("tls", "none") != "none":
            server.write_ca_file(tmp_path / "ca.pem")
        ports = {DOC_PORT: str(server.port), CLOSED_PORT: str(free_port())}
        checker = doctest.OutputChecker()
        for step in example.steps:
            got, status = await run(step, ports, tmp_path)
            flags = doctest.ELLIPSIS
            assert checker.check_output(step.output, got, flags), (
                f"cli.rst line {example.line}: $ {step.command}\n"
                + checker.output_difference(doctest.Example("", step.output), got, flags)
            )
            if step.status is not None:
                assert status == step.status, f"$ {step.command}: exit status {status}"
