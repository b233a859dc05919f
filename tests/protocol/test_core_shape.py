"""What the protocol core holds, and what it leaves to others (issue 11)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import trio_smtp.protocol
import trio_smtp.testing
from trio_smtp.protocol import ClientConnection, Ehlo, Mail, Rcpt

PROTOCOL_DIR = Path(trio_smtp.protocol.__file__).parent
EMPTY_CONTAINERS = ("dict", "list", "set", "deque", "OrderedDict", "defaultdict")
CACHE_DECORATORS = ("cache", "lru_cache", "cached_property")

#: Server-side grammar: only the testing server parses commands and formats replies.
SERVER_GRAMMAR = (
    "CommandSyntaxError",
    "decode_data",
    "format_reply",
    "parse_command_line",
    "parse_path_and_params",
    "xtext_decode",
)


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _module_state(tree: ast.Module) -> list[str]:
    """Module-level names bound to an empty container, and cached functions: state that
    outlives a connection and is shared by every connection in the process."""
    found = []
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        empty = (isinstance(value, (ast.Dict, ast.List, ast.Set)) and not _elements(value)) or (
            isinstance(value, ast.Call) and _name(value) in EMPTY_CONTAINERS and not value.args
        )
        if empty:
            found.append(ast.unparse(node).split("=")[0].strip())
        # A cached function of no arguments is a constant built on first use (a compiled
        # pattern); one with arguments remembers what it was called with.
        if isinstance(node, ast.FunctionDef) and node.args.args:
            found += [node.name for d in node.decorator_list if _name(d) in CACHE_DECORATORS]
    return found


def _elements(value: ast.expr) -> list[object]:
    return list(value.keys) if isinstance(value, ast.Dict) else list(getattr(value, "elts", []))


@pytest.mark.parametrize("path", sorted(PROTOCOL_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_module_level_caches(path: Path) -> None:
    # Two connections in one process share nothing but constants (issue 11).
    assert _module_state(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_scan_finds_a_module_level_cache() -> None:
    source = (
        "_ENCODED: dict[str, bytes] = {}\n"
        "@functools.cache\ndef f(x: int) -> None: ...\n"
        "@functools.cache\ndef pattern() -> None: ...\n"
    )
    assert _module_state(ast.parse(source)) == ["_ENCODED: dict[str, bytes]", "f"]


def ready(conn: ClientConnection) -> ClientConnection:
    conn.receive_data(b"220 hi\r\n")
    conn.next_event()
    conn.send(Ehlo("client.example"))
    conn.receive_data(b"250-hi\r\n250 PIPELINING\r\n")
    conn.next_event()
    return conn


def test_equal_commands_encode_alike_on_every_connection() -> None:
    # The encoded-command memo is per connection: equal commands give equal bytes on
    # fresh connections, and an invalid one is refused on each of them.
    for _ in range(3):
        conn = ready(ClientConnection())
        assert conn.send(Mail("a@b.example")) == b"MAIL FROM:<a@b.example>\r\n"
        assert conn.send(Rcpt("c@d.example")) == b"RCPT TO:<c@d.example>\r\n"
        with pytest.raises(trio_smtp.protocol.LocalProtocolError):
            conn.send(Rcpt("bad\r\naddress@d.example"))


@pytest.mark.parametrize("name", SERVER_GRAMMAR)
def test_server_grammar_lives_in_testing(name: str) -> None:
    assert not hasattr(trio_smtp.protocol, name)
    assert name in trio_smtp.testing.__all__
