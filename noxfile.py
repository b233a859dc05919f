"""Developer sessions: ``nox -s tests lint typecheck docs`` (the default), ``bench``, ``interop``,
``soak``.

Each session installs the project (editable) with the extra it needs into its own virtualenv.
``.ci/run`` runs the same sessions in one prepared venv with ``nox --no-venv --no-install``,
so the commands below are the single definition of what CI checks.
"""

from __future__ import annotations

import os
import shutil

import nox

# The machines we develop and run CI on have CPython 3.11; elsewhere use whatever Python nox
# runs under rather than failing because 3.11 is missing.
PYTHON = "3.11" if shutil.which("python3.11") else None

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite (interop tests included when their servers are installed)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def interop(session: nox.Session) -> None:
    """Only the tests against third-party peers: aiosmtpd, smtp-sink, smtplib, swaks."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "interop", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The fuzz suite (tests/fuzz) with a large count: SmtpClient against hostile scripted
    servers.  ``TRIO_SMTP_FUZZ_COUNT`` conversations (default 20000) from
    ``TRIO_SMTP_FUZZ_SEED`` (default ``random``; the seed of any failure is printed, and
    ``python tests/fuzz/smtp_fuzz.py --seed S --count 1`` replays it)."""
    session.install("-e", ".[test]")
    env = {
        "TRIO_SMTP_FUZZ_COUNT": os.environ.get("TRIO_SMTP_FUZZ_COUNT", "20000"),
        "TRIO_SMTP_FUZZ_SEED": os.environ.get("TRIO_SMTP_FUZZ_SEED", "random"),
    }
    session.run("pytest", "tests/fuzz", "-rA", *session.posargs, env=env)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check (rules incl. ASYNC in pyproject.toml) and ruff format --check."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over trio_smtp and tests (the file list is in pyproject.toml).

    Never install trio-typing: Trio ships inline annotations (py.typed); trio-typing's stubs
    would shadow them and its mypy plugin crashes current mypy.  See docs/typing.rst.
    """
    session.install("-e", ".[test,lint]")
    session.run("python", "-c", _NO_TRIO_TYPING)
    session.run("mypy", "--strict", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Sphinx HTML build; -W turns warnings into errors, -n reports every broken reference."""
    session.install("-e", ".[docs]")
    out = session.posargs[0] if session.posargs else "docs/_build/html"
    session.run("sphinx-build", "-W", "-n", "--keep-going", "-q", "-b", "html", "docs", out)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against aiosmtplib, smtplib and smtp-source (needs Postfix's smtp-sink)."""
    session.install("-e", ".[bench]")
    session.run("python", "bench/run.py", *session.posargs)


_NO_TRIO_TYPING = (
    "import importlib.util as u, sys; sys.exit("
    "'trio-typing is installed: its stubs shadow the annotations Trio ships; uninstall it'"
    " if u.find_spec('trio_typing') or u.find_spec('trio-stubs') else 0)"
)
