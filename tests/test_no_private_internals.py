"""trio_smtp uses the stdlib and its dependencies through their public APIs (issue 11).

A private name of someone else's code can change in any release without notice.  This reads
the package's source and finds the ways such a name is reached: an underscore attribute of an
imported module (``ssl._ssl``), a private module or name imported (``email._header_value_parser``),
``getattr``/``hasattr`` with an underscore name, a private method overridden in or called from
a subclass of an imported class (``_write_headers``), and another object's ``__dict__``.  The
few reads that have no public way are listed with the function that confines each one and
the reason; each has its own test that fails when the library moves it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trio_smtp

PACKAGE = Path(trio_smtp.__file__).parent

#: (function, private name): the reads with no public way, each confined to that function.
ALLOWED = {
    # trio.SSLStream keeps TLS records read from the socket but not yet decrypted in this
    # MemoryBIO, which nothing public shows (see its docstring and
    # tests/test_transport.py::test_tls_records_already_taken_from_the_transport_are_seen).
    ("readable", "_incoming"),
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Finder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.external: set[str] = set()  # names bound to imported (not trio_smtp) objects
        self.function = "<module>"
        self.in_external_subclass = False
        self.found: list[tuple[int, str, str]] = []

    def _flag(self, node: ast.AST, name: str, how: str) -> None:
        if (self.function, name) not in ALLOWED:
            self.found.append((getattr(node, "lineno", 0), name, how))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if any(_private(part) for part in alias.name.split(".")):
                self._flag(node, alias.name, "private module imported")
            if not alias.name.startswith("trio_smtp"):
                self.external.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or (node.module or "").startswith("trio_smtp"):
            return  # the project's own modules: another test's concern
        if any(_private(part) for part in (node.module or "").split(".")):
            self._flag(node, node.module or "", "private module imported")
        for alias in node.names:
            if _private(alias.name):
                self._flag(node, alias.name, "private name imported")
            self.external.add(alias.asname or alias.name)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, self.function = self.function, node.name
        # Annotations are not uses (never evaluated: ``from __future__ import annotations``);
        # typeshed names some types only privately (``argparse._SubParsersAction``).
        arguments = node.args
        for arg in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs):
            arg.annotation = None
        for rest in (arguments.vararg, arguments.kwarg):
            if rest is not None:
                rest.annotation = None
        node.returns = None
        self.generic_visit(node)
        self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        external_base = any(
            isinstance(base, ast.Name | ast.Attribute)
            and ast.unparse(base).split(".")[0] in self.external
            for base in node.bases
        )
        outer, self.in_external_subclass = self.in_external_subclass, external_base
        if external_base:
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and _private(item.name):
                    self._flag(item, item.name, "private method of an imported class overridden")
        self.generic_visit(node)
        self.in_external_subclass = outer

    def visit_Attribute(self, node: ast.Attribute) -> None:
        value = node.value
        if _private(node.attr):
            if isinstance(value, ast.Name) and value.id in self.external:
                self._flag(node, node.attr, "private attribute of an imported module")
            elif (
                self.in_external_subclass
                and isinstance(value, ast.Call)
                and ast.unparse(value.func) == "super"
            ):
                self._flag(node, node.attr, "private method called through super()")
        if node.attr == "__dict__" and not (
            isinstance(value, ast.Name) and value.id in ("self", "cls")
        ):
            self._flag(node, "__dict__", "another object's __dict__")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (
            isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            self._flag(node, node.args[1].value, f"{node.func.id} with a private name")
        self.generic_visit(node)


def test_no_private_internals_of_the_stdlib_or_dependencies() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        finder = _Finder()
        finder.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        relative = path.relative_to(PACKAGE.parent)
        found += [f"{relative}:{line}: {name} ({how})" for line, name, how in finder.found]
    assert not found, "\n".join(found)


def test_the_finder_sees_each_way_in() -> None:
    source = """
import ssl
import email._header_value_parser
from email.generator import BytesGenerator, _make_boundary

class G(BytesGenerator):
    def _write_headers(self, msg): super()._write_headers(msg)

def f(policy, header):
    ssl._ssl._test_decode_cert
    getattr(header, "_parse_tree", None)
    policy.__dict__

def g(parsers: argparse._SubParsersAction) -> None:  # an annotation: not a use
    pass
"""
    finder = _Finder()
    finder.visit(ast.parse(source))
    assert sorted(name for _, name, _ in finder.found) == sorted(
        [
            "email._header_value_parser",
            "_make_boundary",
            "_write_headers",
            "_write_headers",
            "_ssl",
            "_parse_tree",
            "__dict__",
        ]
    )
