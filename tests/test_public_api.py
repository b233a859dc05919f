"""The public API surface: what ``import trio_smtp`` promises (DESIGN.md's API contract).

Users import these names, type checkers follow the ``X as X`` re-exports, and anything not
listed here is private.  A new public name must be added to ``EXPORTS`` and to docs/api.rst.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.resources
import re
import sys
import types
from pathlib import Path

import pytest
import trio

import trio_smtp
import trio_smtp.protocol

ROOT = Path(__file__).resolve().parent.parent

#: DESIGN.md's failure table: every SMTP-level failure, with the builtin it must also be.
ERRORS: dict[str, tuple[type[BaseException], ...]] = {
    "SmtpError": (Exception,),
    "SmtpConnectError": (ConnectionError,),
    "SmtpAuthenticationError": (),
    "SmtpTimeoutError": (TimeoutError,),
    "SmtpTlsError": (),
    "SmtpFailedRecipientsError": (),
    "SmtpFailedRecipientError": (),
    "SmtpProtocolError": (),
    "SmtpDeliveryUnknownError": (),
}

#: Names the contract requires at the top level.
REQUIRED = frozenset(
    {
        "SmtpClient",
        "Security",
        "Timeouts",
        "DeliveryMethod",
        "SendResult",
        "SendCompleted",
        "Reply",
        "SmtpStatusCode",
        *ERRORS,
    }
)

#: Every public top-level name: the required ones plus those the package adds.
EXPORTS = REQUIRED | {"SmtpResponseError", "OAuth2", "ClientStatistics"}
EXPORTS |= {"DeliveryNotification", "DsnReturn"}
EXPORTS |= {"SmtpDeliveryTimeoutError"}
EXPORTS |= {"OutgoingMessage"}
EXPORTS |= {"DkimSigner", "PickupFile", "parse_pickup_file", "read_pickup_file", "send"}
EXPORTS |= {"SmtpPool", "Backoff", "PoolStatistics", "BatchOutcome", "OutcomeStream"}

#: Public subpackages (other public names that are modules must be one of these).
SUBPACKAGES = frozenset({"protocol", "sasl", "testing"})


def public_names(module: types.ModuleType) -> set[str]:
    # Non-identifiers ("@py_builtins") are pytest's assertion-rewriting helpers: the pytest11
    # entry point makes pytest rewrite trio_smtp itself.  No user can reach them as attributes.
    return {name for name in dir(module) if name.isidentifier() and not name.startswith("_")}


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def _reexport_nodes(init: Path) -> list[ast.ImportFrom]:
    """The ``from ... import`` statements of ``init``, at top level or (for the lazily
    loading ``trio_smtp/__init__.py``) in its ``if TYPE_CHECKING:`` block."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    nodes: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            nodes.extend(node.body)
        else:
            nodes.append(node)
    return [n for n in nodes if isinstance(n, ast.ImportFrom) and n.module != "__future__"]


def reexports(init: Path) -> dict[str, str | None]:
    """``name -> asname`` for every ``from ... import name [as asname]`` in ``init``."""
    return {alias.name: alias.asname for node in _reexport_nodes(init) for alias in node.names}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_contract_names_are_exported(name: str) -> None:
    assert name in trio_smtp.__all__, f"trio_smtp.{name} is part of the API contract"
    assert getattr(trio_smtp, name) is not None


def test_all_is_the_public_api() -> None:
    # __all__ (what `from trio_smtp import *` and the docs promise) is exactly EXPORTS.
    assert sorted(trio_smtp.__all__) == sorted(EXPORTS)
    assert {name for name in public_names(trio_smtp) if name not in SUBPACKAGES} == EXPORTS


def test_all_is_what_api_rst_documents_for_trio_smtp() -> None:
    # The names documented in docs/api.rst's `trio_smtp` section, and no other, are exported.
    api = (ROOT / "docs" / "api.rst").read_text(encoding="utf-8")
    section = api.split(".. module:: trio_smtp\n", 1)[1].split("``trio_smtp.protocol``", 1)[0]
    documented = set(re.findall(r"^\.\. [a-z:]+:: (\w+)", section, re.MULTILINE))
    assert documented == set(trio_smtp.__all__)


def test_lazy_table_matches_type_checking_imports() -> None:
    # trio_smtp/__init__.py says twice where each name lives: for type checkers (the
    # TYPE_CHECKING imports) and at run time (_EXPORTS).  They must agree.
    init = ROOT / "trio_smtp" / "__init__.py"
    seen = {
        alias.name: "." * node.level + (node.module or "")
        for node in _reexport_nodes(init)
        for alias in node.names
    }
    assert seen == trio_smtp._EXPORTS


def test_nothing_private_leaks() -> None:
    extra = set()
    for name in public_names(trio_smtp) - EXPORTS:
        value = getattr(trio_smtp, name)
        is_our_subpackage = (
            isinstance(value, types.ModuleType)
            and value.__name__ == f"trio_smtp.{name}"
            and name in SUBPACKAGES
        )
        if not is_our_subpackage:
            extra.add(name)
    assert not extra, f"unexpected public names in trio_smtp (add to EXPORTS or hide): {extra}"


@pytest.mark.parametrize(
    ("package", "init"),
    [
        (trio_smtp, ROOT / "trio_smtp" / "__init__.py"),
        (trio_smtp.protocol, ROOT / "trio_smtp" / "protocol" / "__init__.py"),
    ],
)
def test_reexports_use_x_as_x(package: types.ModuleType, init: Path) -> None:
    # mypy --strict (no implicit re-export) only treats `from m import X as X` as public.
    imported = reexports(init)
    not_explicit = {name: asname for name, asname in imported.items() if asname != name}
    assert not not_explicit, f"{init}: re-export as `X as X`: {not_explicit}"
    exported = {name for name in imported if not name.startswith("_")}
    if hasattr(package, "__all__"):
        assert set(package.__all__) == exported


def test_top_level_exports_are_all_reexported_explicitly() -> None:
    imported = reexports(ROOT / "trio_smtp" / "__init__.py")
    missing = EXPORTS - set(imported)
    assert not missing, missing


def test_reply_is_the_protocol_reply() -> None:
    assert trio_smtp.Reply is trio_smtp.protocol.Reply


@pytest.mark.parametrize(("name", "builtins"), sorted(ERRORS.items()))
def test_error_hierarchy(name: str, builtins: tuple[type[BaseException], ...]) -> None:
    cls = getattr(trio_smtp, name)
    # `except trio_smtp.SmtpError` catches every protocol-level failure ...
    assert issubclass(cls, trio_smtp.SmtpError)
    # ... and generic handlers (`except ConnectionError`, `except TimeoutError`) work too.
    for builtin in builtins:
        assert issubclass(cls, builtin)


def test_failed_recipient_errors_carry_recipient_and_reply() -> None:
    reply = trio_smtp.Reply(550, ("5.1.1 no such user",), "5.1.1")
    one = trio_smtp.SmtpFailedRecipientError("nobody@example.org", reply)
    many = trio_smtp.SmtpFailedRecipientsError([one])
    assert (one.recipient, one.reply) == ("nobody@example.org", reply)
    assert many.failures == [one]
    assert many.result is None  # nothing was delivered
    assert many.status_code is trio_smtp.SmtpStatusCode.MAILBOX_UNAVAILABLE


def test_every_public_name_is_documented() -> None:
    api = (ROOT / "docs" / "api.rst").read_text(encoding="utf-8")
    for package in (trio_smtp, trio_smtp.protocol):
        for name in public_names(package) - SUBPACKAGES:
            if isinstance(getattr(package, name), types.ModuleType):
                continue
            directive = re.compile(rf"^\.\. [a-z:]+:: {re.escape(name)}$", re.MULTILINE)
            assert directive.search(api), f"{package.__name__}.{name} is missing from docs/api.rst"


def test_version_matches_distribution() -> None:
    assert trio_smtp.__version__ == importlib.metadata.version("trio-smtp")


def test_ships_py_typed() -> None:
    assert importlib.resources.files("trio_smtp").joinpath("py.typed").is_file()


def test_console_script_is_registered() -> None:
    # pyproject.toml, not the installed metadata: an editable install keeps the entry point it
    # was installed with until it is reinstalled, so only the source says what ships.
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    (target,) = re.findall(r'(?m)^trio-smtp = "(.*)"$', pyproject)
    assert target == "trio_smtp._cli.main:main"
    module, _, attribute = target.partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


async def test_python_m_trio_smtp_help() -> None:
    done = await trio.run_process(
        [sys.executable, "-m", "trio_smtp", "--help"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out = done.stdout.decode()
    assert out.startswith("usage: trio-smtp")


def test_smtp_error_takes_the_contracts_status_code_and_reply_form() -> None:
    # DESIGN.md: SmtpError(status_code: SmtpStatusCode, reply: Reply | None).
    reply = trio_smtp.Reply(450, ("4.2.1 mailbox busy",), "4.2.1")
    error = trio_smtp.SmtpError(trio_smtp.SmtpStatusCode.MAILBOX_BUSY, reply)
    assert error.status_code is trio_smtp.SmtpStatusCode.MAILBOX_BUSY
    assert error.reply is reply
    assert error.is_transient
    assert "mailbox busy" in str(error)
    bare = trio_smtp.SmtpError(trio_smtp.SmtpStatusCode.GENERAL_FAILURE, None)
    assert bare.status_code is trio_smtp.SmtpStatusCode.GENERAL_FAILURE
    assert bare.reply is None and not bare.is_transient
