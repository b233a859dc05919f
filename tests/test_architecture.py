"""The package's shape, checked statically: imports point down the layers, no module imports
itself back (not even through ``TYPE_CHECKING`` or an import inside a function), no module
reaches into another's private names, and the sans-IO core imports neither Trio nor anything
above it.

The graph is built from the source (the AST of every module under ``trio_smtp/``), not from
``sys.modules``: an import that runs only in a function, under ``TYPE_CHECKING`` or on one
platform is a dependency all the same.  The layers and what each module does are drawn in
docs/design.rst ("Layers").
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import trio_smtp

PACKAGE_DIR = Path(trio_smtp.__file__).parent

#: The layers, bottom first: a module may import its own layer and the ones below, never one
#: above.  The longest matching prefix decides a module's layer.  ``trio_smtp`` itself is the
#: public facade (its lazy ``__getattr__`` table); :mod:`trio_smtp.testing` sits on the public
#: API and the CLI on everything.
LAYERS: dict[str, int] = {
    "trio_smtp.protocol": 0,  # sans-IO SMTP client core
    "trio_smtp.sasl": 1,  # SASL mechanisms (public), over protocol's Auth only
    "trio_smtp._config": 2,  # Security, Timeouts, DeliveryMethod: plain settings values
    "trio_smtp._credentials": 2,  # what credentials= accepts, OAuth2
    "trio_smtp._errors": 2,  # the public exception hierarchy
    "trio_smtp._results": 2,  # SendResult, SendCompleted: what a send returns
    "trio_smtp._message": 3,  # a message made ready for the wire, before any connection
    "trio_smtp._io": 4,  # the stream to the server: transport, deadlines, log, proxy
    "trio_smtp._delivery": 5,  # session steps and the transaction over a transport
    "trio_smtp._client": 6,  # SmtpClient, SmtpPool, send(): settings and connection slots
    "trio_smtp": 7,  # the facade: trio_smtp/__init__.py
    "trio_smtp.testing": 8,  # the testing server (on the public API, see below)
    "trio_smtp._cli": 9,  # the trio-smtp command line
    "trio_smtp.__main__": 10,  # python -m trio_smtp
}

#: What :mod:`trio_smtp.testing` may import from the rest of the package: the public API only
#: (the facade and the public subpackages), so that a user could have written it.
TESTING_MAY_IMPORT = ("trio_smtp", "trio_smtp.protocol", "trio_smtp.sasl")


@dataclass(frozen=True)
class Import:
    """One ``import``/``from ... import`` statement's edge to a module of the package."""

    source: str  # the importing module
    target: str  # the imported module
    names: tuple[str, ...]  # the names a ``from`` import takes (empty for ``import x``)
    line: int

    def __str__(self) -> str:
        names = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.source}:{self.line} -> {self.target}{names}"


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """Every import of a package module in *path*, wherever it is in the file."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "trio_smtp":
                    yield Import(name, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".")
                if not is_package:
                    package.pop()
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            else:
                target = node.module or ""
            if target.split(".")[0] != "trio_smtp":
                continue
            taken = tuple(alias.name for alias in node.names)
            submodules = [n for n in taken if f"{target}.{n}" in modules]
            for sub in submodules:  # ``from . import x``: an edge to the module x
                yield Import(name, f"{target}.{sub}", (), node.lineno)
            rest = tuple(n for n in taken if n not in submodules)
            if rest or not submodules:
                yield Import(name, target, rest, node.lineno)


def import_graph(root: Path = PACKAGE_DIR) -> list[Import]:
    modules = all_modules(root)
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules)]


def layer_of(module: str) -> int:
    best = max((prefix for prefix in LAYERS if _within(module, prefix)), key=len)
    return LAYERS[best]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), or one module
    importing itself: each is an import cycle."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_imports(edges: list[Import]) -> list[str]:
    return [
        f"{edge} (layer {layer_of(edge.source)} imports layer {layer_of(edge.target)})"
        for edge in edges
        if layer_of(edge.target) > layer_of(edge.source)
    ]


def beyond_public_api_from_testing(edges: list[Import]) -> list[str]:
    return [
        str(edge)
        for edge in edges
        if _within(edge.source, "trio_smtp.testing")
        and not _within(edge.target, "trio_smtp.testing")
        and edge.target not in TESTING_MAY_IMPORT
        and not any(_within(edge.target, p) for p in TESTING_MAY_IMPORT if p != "trio_smtp")
    ]


def private_names_imported(edges: list[Import]) -> list[str]:
    """A ``_name`` (not a module, not a dunder) taken from another module: that module's
    inside, which its own tests and nobody else should reach."""
    return [
        f"{edge}: {name}"
        for edge in edges
        for name in edge.names
        if name.startswith("_") and not name.startswith("__") and edge.target != edge.source
    ]


def protocol_core_escapes(root: Path = PACKAGE_DIR) -> list[str]:
    """The sans-IO core imports no Trio and nothing of the package outside itself (every other
    layer is above it and most import Trio), anywhere in its files."""
    found = [
        f"{edge} leaves the core"
        for edge in import_graph(root)
        if _within(edge.source, "trio_smtp.protocol")
        and not _within(edge.target, "trio_smtp.protocol")
    ]
    for path in sorted((root / "protocol").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                targets = [node.module or ""]
            else:
                continue
            found += [
                f"{module_name(path, root)}:{node.lineno} imports {target}"
                for target in targets
                if target.split(".")[0] == "trio"
            ]
    return found


# --- the rules ------------------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    # The catch-all "trio_smtp" key is the facade; a new top-level module must say where it
    # belongs instead of silently landing there.
    unplaced = [
        name
        for name in all_modules()
        if name != "trio_smtp"
        and max((p for p in LAYERS if _within(name, p)), key=len) == "trio_smtp"
    ]
    assert unplaced == []


def test_no_import_cycles() -> None:
    edges = import_graph()
    found = cycles(edges)
    # The failure names the imports that close each cycle, not just its modules.
    inside = [str(e) for e in edges if any(e.source in c and e.target in c for c in found)]
    assert found == [], "\n".join(inside)


def test_imports_point_down() -> None:
    assert upward_imports(import_graph()) == []


def test_testing_uses_the_public_api() -> None:
    assert beyond_public_api_from_testing(import_graph()) == []


def test_no_private_names_across_modules() -> None:
    assert private_names_imported(import_graph()) == []


def test_protocol_core_imports_no_trio_and_nothing_above_it() -> None:
    assert protocol_core_escapes() == []


# --- the checks catch what they are for -----------------------------------------------------


@pytest.fixture
def fake_package(tmp_path: Path) -> Path:
    """A small package named trio_smtp with one module per layer and no violation."""
    root = tmp_path / "trio_smtp"
    files = {
        "__init__.py": "from ._client.client import Client\n",
        "protocol/__init__.py": "from ._state import State\n",
        "protocol/_state.py": "class State: ...\n",
        "_errors.py": "from .protocol import State\n",
        "_io/__init__.py": "",
        "_io/transport.py": "import trio\nfrom .._errors import State\n",
        "_delivery/__init__.py": "",
        "_delivery/transaction.py": "from .._io import transport\n",
        "_client/__init__.py": "",
        "_client/client.py": "from .._delivery.transaction import transport\nclass Client: ...\n",
        "testing/__init__.py": "from trio_smtp import Client\nfrom ..protocol import State\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.write_text(path.read_text() + text)


def test_clean_fake_package_passes(fake_package: Path) -> None:
    edges = import_graph(fake_package)
    assert cycles(edges) == []
    assert upward_imports(edges) == []
    assert beyond_public_api_from_testing(edges) == []
    assert private_names_imported(edges) == []
    assert protocol_core_escapes(fake_package) == []


def test_detects_a_cycle_through_type_checking(fake_package: Path) -> None:
    _write(
        fake_package,
        "_io/transport.py",
        "import typing\nif typing.TYPE_CHECKING:\n    from ..protocol import _state\n",
    )
    _write(fake_package, "protocol/_state.py", "def f():\n    from .._io import transport\n")
    # transport -> _errors -> protocol -> _state -> transport
    assert cycles(import_graph(fake_package)) == [
        [
            "trio_smtp._errors",
            "trio_smtp._io.transport",
            "trio_smtp.protocol",
            "trio_smtp.protocol._state",
        ]
    ]


def test_detects_a_function_level_cycle(fake_package: Path) -> None:
    _write(fake_package, "_errors.py", "def f():\n    from ._io.transport import x\n")
    found = cycles(import_graph(fake_package))
    assert found == [["trio_smtp._errors", "trio_smtp._io.transport"]]


def test_detects_an_upward_import(fake_package: Path) -> None:
    _write(fake_package, "_io/transport.py", "from .._client import client\n")
    assert upward_imports(import_graph(fake_package)) == [
        "trio_smtp._io.transport:3 -> trio_smtp._client.client (layer 4 imports layer 6)"
    ]


def test_detects_a_private_name(fake_package: Path) -> None:
    _write(fake_package, "_delivery/transaction.py", "from trio_smtp._io.transport import _chunk\n")
    assert private_names_imported(import_graph(fake_package)) == [
        "trio_smtp._delivery.transaction:2 -> trio_smtp._io.transport (_chunk): _chunk"
    ]


def test_detects_testing_beyond_the_public_api(fake_package: Path) -> None:
    _write(fake_package, "testing/__init__.py", "from .._io.transport import State\n")
    assert beyond_public_api_from_testing(import_graph(fake_package)) == [
        "trio_smtp.testing:3 -> trio_smtp._io.transport (State)"
    ]


def test_detects_trio_in_the_core(fake_package: Path) -> None:
    _write(fake_package, "protocol/_state.py", "def f():\n    import trio.lowlevel\n")
    _write(fake_package, "protocol/__init__.py", "from .. import _errors\n")
    assert protocol_core_escapes(fake_package) == [
        "trio_smtp.protocol:2 -> trio_smtp._errors leaves the core",
        "trio_smtp.protocol._state:3 imports trio.lowlevel",
    ]


def test_tests_import_helpers_not_conftest() -> None:
    # conftest.py holds fixtures; a helper a test imports lives in tests/helpers/ (a plain
    # package), so that no test depends on how pytest puts conftest on sys.path.
    tests_dir = Path(__file__).parent
    found = [
        f"{path.relative_to(tests_dir)}:{node.lineno}"
        for path in sorted(tests_dir.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if (isinstance(node, ast.ImportFrom) and node.module == "conftest")
        or (isinstance(node, ast.Import) and any(a.name == "conftest" for a in node.names))
    ]
    assert found == []


def test_design_page_names_every_module() -> None:
    # docs/design.rst's "Layers" table has one line per module: a new module gets its line.
    # A package whose __init__ is only a docstring is named by its folder's row (**_io/**).
    design = (PACKAGE_DIR.parent / "docs" / "design.rst").read_text(encoding="utf-8")
    missing = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        name = path.relative_to(PACKAGE_DIR).as_posix()
        if len(ast.parse(path.read_text(encoding="utf-8")).body) <= 1:
            name = f"{path.parent.name}/"
            found = f"**{name}**" in design
        else:
            found = f"``{name}``" in design
        if not found:
            missing.append(name)
    assert missing == []


def transport_stream_readers(root: Path = PACKAGE_DIR) -> list[str]:
    """Reads of a transport's stream (``transport.stream``, ``self._transport.stream``...)
    outside ``_io/``: the transport is the only reader and writer of its stream, and what
    the layers above need to know about it has a method (issue 11, a closed transport)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        if _within(name, "trio_smtp._io") or _within(name, "trio_smtp.testing"):
            continue  # the testing server has streams of its own, no Transport
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Attribute) and node.attr == "stream"):
                continue
            owner = node.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else None
            if isinstance(owner, ast.Name):
                owner_name = owner.id
            if owner_name is not None and "transport" in owner_name.lower():
                found.append(f"{name}:{node.lineno}")
    return found


def test_nothing_above_io_reads_a_transports_stream() -> None:
    assert transport_stream_readers() == []


def test_detects_a_transport_stream_read(fake_package: Path) -> None:
    assert transport_stream_readers(fake_package) == []
    _write(fake_package, "_delivery/transaction.py", "def f(t):\n    return t._transport.stream\n")
    assert transport_stream_readers(fake_package) == ["trio_smtp._delivery.transaction:3"]
