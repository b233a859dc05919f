"""The protocol core is sans-IO: it never imports trio (design rule 1)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import trio_smtp.protocol

PROTOCOL_DIR = Path(trio_smtp.protocol.__file__).parent

# Imports trio_smtp.protocol in a fresh interpreter where any attempt to import trio fails.
# The parent package's __init__ (which does use trio, for the client) is replaced by a bare
# namespace so that only the protocol package's own imports are exercised.
_PROBE = """
import importlib.abc, sys, types

class ForbidTrio(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "trio" or name.startswith("trio."):
            raise ImportError(f"the protocol core imported {name}")
        return None

sys.meta_path.insert(0, ForbidTrio())
parent = types.ModuleType("trio_smtp")
parent.__path__ = [sys.argv[1]]
sys.modules["trio_smtp"] = parent

import trio_smtp.protocol as p
conn = p.ClientConnection()
conn.receive_data(b"220 ready\\r\\n")
assert conn.next_event().code == 220
assert not any(m == "trio" or m.startswith("trio.") for m in sys.modules), "trio loaded"
print("ok")
"""


def test_protocol_imports_without_trio() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(PROTOCOL_DIR.parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_probe_detects_trio() -> None:
    # The probe itself works: importing trio in it fails.
    probe = _PROBE.replace("import trio_smtp.protocol as p", "import trio.lowlevel")
    result = subprocess.run(
        [sys.executable, "-c", probe, str(PROTOCOL_DIR.parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "imported trio" in result.stderr


#: Imported for type checkers only (``if TYPE_CHECKING:``), never at run time: the
#: PEP 681 ``dataclass_transform`` that tells mypy the value classes are frozen.
_TYPE_CHECKING_ONLY = frozenset({"typing_extensions"})


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """The import statements inside an ``if TYPE_CHECKING:`` body (not its else)."""
    guarded: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                guarded.update(ast.walk(statement))
    return guarded


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module, relative level) of every import statement in ``path``, except a
    type-checking-only module imported under ``if TYPE_CHECKING:``."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = _type_checking_only(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node in guarded and node.module in _TYPE_CHECKING_ONLY and node.level == 0:
                continue
            found.append((node.module or "", node.level))
    return found


def test_protocol_sources_import_only_stdlib_and_siblings() -> None:
    sources = sorted(PROTOCOL_DIR.glob("*.py"))
    assert len(sources) >= 8
    for path in sources:
        for module, level in _imports(path):
            if level == 0:
                top = module.split(".")[0]
                assert top in sys.stdlib_module_names, f"{path.name} imports {module}"
            else:
                # Only siblings inside protocol/: "from .. import x" could pull in trio.
                assert level == 1, f"{path.name} imports from outside trio_smtp.protocol"
