"""Every Python example in README.md and docs/ runs, against the testing server on loopback.

Theory of operation.  The examples are collected from README.md (```` ```python ```` fences)
and docs/**/*.rst (``.. code-block:: python``); any other code block must name a language
that is not Python (``console``, ``text``, ...), and a bare ``::`` literal block is refused,
so no example can slip past unrun.  Each example is compiled with top-level ``await``
allowed, its top-level ``trio.run(f, *args)`` becomes ``await f(*args)``, and it runs in
``trio.run`` here, with the file's own line numbers in tracebacks.

Nothing reaches the network.  Every connection a client opens to a host that is not
loopback is redirected (one wrapper around ``open_session``, the single place sessions are
opened) to a :class:`~trio_smtp.testing.SmtpServer` on 127.0.0.1, started for that host:
its certificate names the host, the client's SSL context is told to trust its CA, it
accepts the credentials the client was given, and it speaks implicit TLS on port 465,
STARTTLS otherwise.  ``trio.open_tcp_stream`` refuses any non-loopback host outright.

A fragment says what it needs in an RST comment on the line before its ``code-block``
(``<!-- ... -->`` in the README); the comment is invisible in the built docs::

    .. example: uses client, msg; raises SmtpTlsError; then await f(msg)

``uses NAMES``
    Names the example takes from its context: the objects in :class:`Context` (an open
    ``client``, a ``msg``, ...), ``trio``/``trio_smtp``/``pytest``, or any public name of
    ``trio_smtp`` and ``trio_smtp.protocol``.
``continues``
    Runs after the page's previous example, in the same namespace (it uses its variables).
``raises NAME``
    The example is meant to fail with that exception (the page says why).
``then CODE``
    Code run after the example, to call the functions it only defines.

A block that defines ``test_*`` functions is a pytest example: each test is called with the
fixtures it names (``smtp_server`` configured by its ``smtp_server`` marker,
``smtp_client_factory``, ``autojump_clock``), as the plugin would.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import ipaddress
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_smtp
import trio_smtp._client.connection_slot
import trio_smtp._delivery.session
import trio_smtp._io.connect
import trio_smtp.protocol
from trio_smtp.testing import SmtpServer

ROOT = Path(__file__).resolve().parent.parent

#: Code blocks that could hide an example from this test: a bare ``::`` literal block (its
#: language is implicit) or a language that is neither "python" nor in NOT_PYTHON.
PROBLEMS: list[str] = []

#: Languages of code blocks that are not Python and so are not run.
NOT_PYTHON = frozenset({"console", "text", "sh", "shell", "bash", "ini", "toml", "json", "none"})


@dataclasses.dataclass
class Example:
    """One Python code block: where it is, its code, and what its marker comment says."""

    path: Path
    line: int  # of the code's first line, counted from 1
    code: str
    uses: tuple[str, ...] = ()
    continues: bool = False
    raises: str | None = None
    then: str = ""

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


# -- collecting -------------------------------------------------------------------------------


_MARKER = re.compile(r"^\s*(?:\.\.|<!--) example:(.*?)(?:-->)?\s*$")
_DIRECTIVE = re.compile(r"^(\s*)\.\. (?:code-block|code|sourcecode)::\s*(\S*)\s*$")


def parse_marker(text: str, example: Example) -> None:
    clauses = text.strip()
    while clauses:
        head, _, rest = clauses.partition(";")
        head = head.strip()
        if head.startswith("then "):
            example.then = clauses.strip()[len("then ") :]
            return
        if head.startswith("uses "):
            example.uses = tuple(n.strip() for n in head[len("uses ") :].split(","))
        elif head == "continues":
            example.continues = True
        elif head.startswith("raises "):
            example.raises = head[len("raises ") :].strip()
        else:
            raise ValueError(f"{example.name}: unknown example marker clause {head!r}")
        clauses = rest


def marker_before(lines: list[str], index: int) -> str | None:
    """The marker on the last non-blank line before ``lines[index]``, if any."""
    for previous in reversed(lines[:index]):
        if previous.strip():
            found = _MARKER.match(previous)
            return found.group(1) if found else None
    return None


def rst_examples(path: Path) -> Iterator[Example]:
    lines = path.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            PROBLEMS.append(f"{path.relative_to(ROOT)}:{index + 1}: a '::' literal block")
        directive = _DIRECTIVE.match(line)
        if directive is None:
            continue
        language = directive.group(2)
        if language in NOT_PYTHON:
            continue
        if language != "python":
            PROBLEMS.append(f"{path.relative_to(ROOT)}:{index + 1}: language {language!r}")
            continue
        body = _indented_body(lines, index + 1, len(directive.group(1)))
        first, code = body
        example = Example(path, first + 1, code)
        marker = marker_before(lines, index)
        if marker is not None:
            parse_marker(marker, example)
        yield example


def _indented_body(lines: list[str], start: int, indent: int) -> tuple[int, str]:
    """The content of a directive starting at ``lines[start]``: (first line index, code)."""
    index = start
    while index < len(lines) and (not lines[index].strip() or _is_option(lines[index], indent)):
        index += 1
    first = index
    body: list[str] = []
    while index < len(lines) and (
        not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent
    ):
        body.append(lines[index])
        index += 1
    width = min(len(b) - len(b.lstrip()) for b in body if b.strip())
    return first, "\n".join(b[width:] for b in body).rstrip() + "\n"


def _is_option(line: str, indent: int) -> bool:
    return line.lstrip().startswith(":") and len(line) - len(line.lstrip()) > indent


def markdown_examples(path: Path) -> Iterator[Example]:
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        fence = lines[index]
        if not fence.startswith("```"):
            index += 1
            continue
        end = lines.index("```", index + 1)
        language = fence[3:].strip()
        if language not in NOT_PYTHON and language != "python":
            PROBLEMS.append(f"{path.relative_to(ROOT)}:{index + 1}: language {language!r}")
        elif language == "python":
            example = Example(path, index + 2, "\n".join(lines[index + 1 : end]) + "\n")
            marker = marker_before(lines, index)
            if marker is not None:
                parse_marker(marker, example)
            yield example
        index = end + 1


def collect() -> list[list[Example]]:
    """Every example, those marked ``continues`` grouped with the one they continue."""
    examples = list(markdown_examples(ROOT / "README.md"))
    for path in sorted((ROOT / "docs").rglob("*.rst")):
        examples.extend(rst_examples(path))
    groups: list[list[Example]] = []
    for example in examples:
        if example.continues:
            assert groups and groups[-1][-1].path == example.path, example.name
            groups[-1].append(example)
        else:
            groups.append([example])
    return groups


EXAMPLES = collect()


# -- the context examples run in --------------------------------------------------------------


def _message(to: str = "you@example.net", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "me@example.org"
    msg["To"] = to
    for name, value in headers.items():
        msg[name] = value
    msg.set_content("Sent from a documentation example.")
    return msg


def _raw(to: str) -> bytes:
    return f"From: news@example.org\r\nTo: {to}\r\nSubject: hi\r\n\r\nHello.\r\n".encode()


async def _send_welcome_mail(client: trio_smtp.SmtpClient, to: str) -> None:
    msg = _message(to, Subject="Welcome!")
    msg.set_content("Your account is ready.")
    await client.send(msg)


def _refresh() -> tuple[str, int]:
    return "token-1", 3600


def _pickup_file(directory: Path) -> Path:
    path = directory / "0123456789abcdef0123456789abcdef.eml"
    path.write_bytes(
        b"X-Sender: me@example.org\r\nX-Receiver: you@example.net\r\n" + _raw("you@example.net")
    )
    return path


def _private_key_pem() -> bytes:
    """A fresh RSA key, as ``openssl genpkey -algorithm RSA`` writes it (PKCS#8 PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


#: Files the examples read, made in their working directory.
FILES = {
    "outbox/0042.eml": _raw("team@example.net"),
    "data.tar": b"\0" * 100_000,
    "dkim-private.pem": _private_key_pem(),
}
#: Absolute directories the examples name, made under the working directory instead.
DIRECTORIES = ("/var/spool/mail-pickup",)


def context_objects(tmp_path: Path, client: trio_smtp.SmtpClient) -> dict[str, Any]:
    """What ``uses`` may name, besides modules and public names."""
    return {
        "client": client,
        "msg": _message(Cc="customer@example.net", Bcc="audit@example.org", Subject="Hi"),
        "raw_bytes": _raw("you@example.net"),
        "creds": ("me", "app-password"),
        "newsletter": [(_raw(to), to) for to in ("a@example.net", "b@example.net")],
        "invoices": [(n, _raw(to), to) for n, to in ((1, "c@example.net"), (2, "d@example.net"))],
        "path": _pickup_file(tmp_path),
        "send_welcome_mail": _send_welcome_mail,
        "make_invoice": lambda: _message("customer@example.net", Subject="Invoice"),
        "make_message": _message,
        "refresh": _refresh,
    }


def resolve(name: str, objects: dict[str, Any]) -> Any:
    if name in objects:
        return objects[name]
    modules = {"trio": trio, "trio_smtp": trio_smtp, "pytest": pytest}
    if name in modules:
        return modules[name]
    for package in (trio_smtp, trio_smtp.protocol):
        if name in getattr(package, "__all__", ()) or hasattr(package, name):
            return getattr(package, name)
    raise LookupError(f"'uses {name}': no such context object or public name")


# -- where clients connect ---------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Servers:
    """One testing server per remote (host, port) a client asks for, started on demand."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._servers: dict[tuple[str, int], SmtpServer] = {}
        self._lock = trio.Lock()

    async def for_config(self, config: Any) -> SmtpServer:
        key = (config.host, config.port)
        async with self._lock:  # a pool opens several sessions at once: one server each
            return await self._server_for(key, config)

    async def _server_for(self, key: tuple[str, int], config: Any) -> SmtpServer:
        if key not in self._servers:
            secure = config.security is trio_smtp.Security.IMPLICIT_TLS
            server = SmtpServer(
                hostname=config.host,
                tls="implicit" if secure else "starttls",
                credentials=await _accepted_credentials(config.credentials),
            )
            await self._nursery.start(server.serve)
            self._servers[key] = server
        return self._servers[key]

    async def aclose(self) -> None:
        for server in self._servers.values():
            await server.aclose()
            server.check()


async def _accepted_credentials(credentials: object) -> dict[str, str]:
    if isinstance(credentials, tuple):
        user, password = credentials
        return {user: password}
    if isinstance(credentials, trio_smtp.OAuth2):
        return {credentials.username: await credentials.get_token()}
    return {}


@asynccontextmanager
async def redirected(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Servers]:
    """Send every non-loopback session to a loopback testing server."""
    # The client opens every session through this name (if that changes, only_loopback below
    # makes the examples fail rather than reach a remote host).
    real_open_session = trio_smtp._delivery.session.open_session
    real_open_tcp_stream = trio.open_tcp_stream

    async def open_session(config: Any) -> Any:
        if config.stream_factory is not None or config.unix_socket is not None:
            return await real_open_session(config)
        if is_loopback(config.host):
            return await real_open_session(config)
        server = await servers.for_config(config)
        if config.ssl_context is not None:
            config.ssl_context.load_verify_locations(cadata=server.ca_pem.decode("ascii"))

        async def connect() -> trio.abc.Stream:
            return await real_open_tcp_stream(server.host, server.port)

        return await real_open_session(config._replace(stream_factory=connect))

    async def only_loopback(host: str, port: int, **kwargs: Any) -> trio.SocketStream:
        assert is_loopback(host), f"an example tried to connect to {host}:{port}"
        return await real_open_tcp_stream(host, port, **kwargs)

    monkeypatch.setattr(trio_smtp._client.connection_slot, "open_session", open_session)
    monkeypatch.setattr(trio, "open_tcp_stream", only_loopback)
    real_open_tcp = trio_smtp._io.connect.open_tcp

    async def only_loopback_tcp(
        host: str, port: int, source: str | None = None
    ) -> trio.SocketStream:
        assert is_loopback(host), f"an example tried to connect to {host}:{port}"
        return await real_open_tcp(host, port, source)

    # The client dials address literals itself (trio_smtp._io.connect.open_tcp).
    monkeypatch.setattr(trio_smtp._io.connect, "open_tcp", only_loopback_tcp)
    async with trio.open_nursery() as nursery:
        servers = Servers(nursery)
        try:
            yield servers
        finally:
            await servers.aclose()


# -- running -----------------------------------------------------------------------------------


class _TrioRunToAwait(ast.NodeTransformer):
    """Top-level ``trio.run(f, *args)`` -> ``await f(*args)``: the example already runs
    inside Trio here."""

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        call = node.value
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "run"
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "trio"
        ):
            target, *args = call.args
            node.value = ast.copy_location(ast.Await(ast.Call(target, args, call.keywords)), call)
        return node


def compile_example(example: Example, source: str | None = None, line: int | None = None) -> Any:
    text = source if source is not None else example.code
    for directory in DIRECTORIES:
        text = text.replace(directory, directory.lstrip("/"))
    tree = ast.parse(text, mode="exec")
    if source is None:
        tree = _TrioRunToAwait().visit(tree)
    ast.increment_lineno(tree, (line if line is not None else example.line) - 1)
    ast.fix_missing_locations(tree)
    # dont_inherit: this module's `from __future__ import annotations` must not apply.
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    return compile(tree, str(example.path), "exec", flags=flags, dont_inherit=True)


async def execute(code: Any, namespace: dict[str, Any]) -> None:
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result


async def run_group(
    group: list[Example],
    tmp_path: Path,
    namespace: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(redirected(monkeypatch))
        client = trio_smtp.SmtpClient("smtp.example.org", credentials=("me", "app-password"))
        await stack.enter_async_context(client)
        objects = context_objects(tmp_path, client)
        for example in group:
            namespace.update({name: resolve(name, objects) for name in example.uses})
            await run_one(example, namespace)


async def run_one(example: Example, namespace: dict[str, Any]) -> None:
    expected = resolve(example.raises, {}) if example.raises else None
    try:
        await execute(compile_example(example), namespace)
        if example.then:
            await execute(compile_example(example, example.then, example.line), namespace)
    except BaseException as exc:
        if expected is not None and isinstance(exc, expected):
            return
        raise
    assert expected is None, f"{example.name}: expected {example.raises}, nothing was raised"


# -- pytest examples (test_* functions defined by an example) ----------------------------------


def run_defined_tests(namespace: dict[str, Any]) -> int:
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    for test in tests:
        parameters = inspect.signature(test).parameters
        clock = trio.testing.MockClock(autojump_threshold=0)
        trio.run(_run_defined_test, test, parameters, clock, clock=clock)
    return len(tests)


async def _run_defined_test(test: Callable[..., Any], parameters: Any, clock: Any) -> None:
    kwargs: dict[str, Any] = {"credentials": {"user": "password"}}
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "smtp_server":
            kwargs.update(mark.kwargs)
    async with SmtpServer(**kwargs) as server:
        fixtures = {
            "smtp_server": server,
            "smtp_client_factory": _client_factory(server),
            "autojump_clock": clock,
        }
        await test(**{name: fixtures[name] for name in parameters})


def _client_factory(server: SmtpServer) -> Callable[..., trio_smtp.SmtpClient]:
    # As the plugin's smtp_client_factory fixture.
    security = {
        "none": trio_smtp.Security.NONE,
        "starttls": trio_smtp.Security.STARTTLS,
        "implicit": trio_smtp.Security.IMPLICIT_TLS,
    }[server.config.tls.value]

    def factory(**kwargs: Any) -> trio_smtp.SmtpClient:
        kwargs.setdefault("security", security)
        if security is not trio_smtp.Security.NONE:
            kwargs.setdefault("ssl_context", server.ssl_context)
        return trio_smtp.SmtpClient(server.host, server.port, **kwargs)

    return factory


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("group", EXAMPLES, ids=[group[0].name for group in EXAMPLES])
def test_example_runs(
    group: list[Example], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, data in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    for directory in DIRECTORIES:
        (tmp_path / directory.lstrip("/")).mkdir(parents=True)
    namespace: dict[str, Any] = {"__name__": "__doc_example__"}
    trio.run(run_group, group, tmp_path, namespace, monkeypatch)
    run_defined_tests(namespace)


def test_every_code_block_says_whether_it_is_python() -> None:
    # Use '.. code-block:: python' (run here) or a NOT_PYTHON language (console, text, ...).
    assert not PROBLEMS


def test_examples_were_found() -> None:
    names = [example.name for group in EXAMPLES for example in group]
    assert any(name.startswith("README.md:") for name in names)
    assert len(names) >= 30, names
