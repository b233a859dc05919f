"""Sphinx helpers for trio_smtp's documentation.

``.. smtp-state-diagram::``
    Draws the client's state machine from :data:`trio_smtp.protocol.TRANSITIONS` at build
    time, so the picture cannot drift from the code (cf. h11's docs).  Rendered with
    ``sphinx.ext.graphviz`` (Debian package ``graphviz``); without ``dot`` on the PATH the
    Graphviz source is shown instead of failing the build.  ``:table:`` adds the
    transitions as a table below the picture.

``.. toctree-existing::``
    A ``toctree`` that silently leaves out entries whose page does not exist yet, so pages
    being written on other branches can be listed in their final order today.

Public reference targets
    Autodoc writes annotations with their defining module (``trio_smtp._config.Security``);
    a ``missing-reference`` handler points such targets at the documented public name
    (``trio_smtp.Security``) so ``-n`` builds stay clean without rewriting ``__module__``.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
import shutil
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from docutils import nodes
from docutils.nodes import Element, Node
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.environment import BuildEnvironment
from sphinx.ext.graphviz import graphviz
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.matching import patfilter

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "trio_smtp.protocol:TRANSITIONS"
PUBLIC_NAMESPACES = ("trio_smtp", "trio_smtp.protocol", "trio_smtp.testing", "trio_smtp.sasl")
FAILURE_STATES = frozenset({"ERROR"})
FINAL_STATES = frozenset({"CLOSED", "ERROR"})


# --- the state diagram ----------------------------------------------------------------------


def load_table(spec: str) -> tuple[Mapping[Any, Any], Any]:
    """Import ``module:NAME`` and return the mapping and its module."""
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    table = getattr(module, attr or "TRANSITIONS")
    if not isinstance(table, Mapping):
        raise TypeError(f"{spec} is a {type(table).__name__}, not a mapping")
    return table, module


def state_name(state: Any) -> str:
    return str(getattr(state, "name", state))


def event_name(event: Any) -> str:
    if isinstance(event, str):
        return event
    return str(getattr(event, "__name__", None) or getattr(event, "name", None) or event)


def split_key(key: Any) -> tuple[Any, Any]:
    """A table key is ``(state, event)``; anything else is a bug the docs must report."""
    if not (isinstance(key, tuple) and len(key) == 2):
        raise TypeError(f"transition key {key!r} is not a (state, event) pair")
    return key[0], key[1]


def all_states(table: Mapping[Any, Any], module: Any) -> list[Any]:
    """Every state in enum order: members of the states' enum (or the module's ``State``)."""
    found = [split_key(k)[0] for k in table] + list(table.values())
    enum_type = next((type(s) for s in found if isinstance(s, enum.Enum)), None)
    if enum_type is None and isinstance(getattr(module, "State", None), type):
        enum_type = module.State
    if enum_type is not None and issubclass(enum_type, enum.Enum):
        return list(enum_type)
    return list(dict.fromkeys(found))


def edges(table: Mapping[Any, Any]) -> dict[tuple[str, str], list[str]]:
    """``(source, target) -> [event, ...]``: parallel transitions share one arrow."""
    merged: dict[tuple[str, str], list[str]] = {}
    for key, target in table.items():
        source, event = split_key(key)
        merged.setdefault((state_name(source), state_name(target)), []).append(event_name(event))
    return merged


def universal(table: Mapping[Any, Any], states: list[str]) -> dict[tuple[str, str], set[str]]:
    """``(event, target) -> sources`` for events that lead to one target from (nearly) every
    state, such as ``error`` -> ERROR: drawn once, from "any state", instead of N times."""
    sources: dict[tuple[str, str], set[str]] = {}
    for key, target in table.items():
        source, event = split_key(key)
        sources.setdefault((event_name(event), state_name(target)), set()).add(state_name(source))
    return {k: v for k, v in sources.items() if len(v) >= max(3, len(states) - 2)}


def dot_quote(text: str) -> str:
    """A Graphviz quoted string (IDs and labels)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_EVENT = re.compile(r"^(send|reply):([^:]+)(?::(.+))?$")


def compact_label(events: Iterable[str]) -> list[str]:
    """Label lines: ``send:MAIL``, ``reply:MAIL:ok`` -> ``MAIL send/ok``; others as they are."""
    grouped: dict[str, list[str]] = {}
    for event in events:
        match = _EVENT.match(event)
        if match is None:
            grouped.setdefault(event, [])
            continue
        kind, name, outcome = match.groups()
        grouped.setdefault(name, []).append("send" if kind == "send" else (outcome or "reply"))
    return [
        f"{name} {'/'.join(sorted(parts, key=_part_order))}".rstrip()
        for name, parts in grouped.items()
    ]


def _part_order(part: str) -> tuple[int, str]:
    order = ("send", "ok", "more", "fail")
    return (order.index(part) if part in order else len(order), part)


def to_dot(table: Mapping[Any, Any], module: Any) -> str:
    """Graphviz source for the state machine described by ``table``.

    Self-loops (refused commands, commands that keep the state) are left out, and events
    that lead to the same state from (nearly) every state are drawn once from "any state";
    the table next to the diagram lists every transition.
    """
    states = [state_name(s) for s in all_states(table, module)]
    everywhere = universal(table, states)
    lines = [
        "digraph smtp_client {",
        '  graph [rankdir=TB, nodesep=0.35, ranksep=0.45, fontname="sans-serif"];',
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="sans-serif"];',
        '  edge [fontname="sans-serif", fontsize=9];',
    ]
    for name in states:
        extra = ", peripheries=2" if name in FINAL_STATES else ""
        lines.append(f"  {dot_quote(name)} [label={dot_quote(name)}{extra}];")
    if states:
        lines.append('  "__start" [shape=point, width=0.12, label=""];')
        lines.append(f'  "__start" -> {dot_quote(states[0])};')
    if everywhere:
        lines.append('  "__any" [label="any state", shape=plaintext, style="", fontsize=10];')
    for (source, target), events in edges(table).items():
        shown = [e for e in events if (e, target) not in everywhere]
        if source == target or not shown:
            continue
        lines.append(edge_line(source, target, shown))
    by_target: dict[str, list[str]] = {}
    for event, target in everywhere:
        by_target.setdefault(target, []).append(event)
    for target, events in by_target.items():
        lines.append(edge_line("__any", target, events))
    lines.append("}")
    return "\n".join(lines) + "\n"


def edge_line(source: str, target: str, events: list[str]) -> str:
    style = ', style=dashed, color="#999999"' if target in FAILURE_STATES else ""
    # Each line quoted on its own: "\\n" is Graphviz's line break and must stay unescaped.
    label = '"' + "\\n".join(dot_quote(line)[1:-1] for line in compact_label(events)) + '"'
    return f"  {dot_quote(source)} -> {dot_quote(target)} [label={label}{style}];"


def table_rst(table: Mapping[Any, Any]) -> list[str]:
    """The transitions as an RST list-table: one row per (state, next state), every event."""
    rows = [
        ".. list-table:: Every transition in the table",
        "   :header-rows: 1",
        "   :widths: 20 60 20",
        "",
        "   * - State",
        "     - Events",
        "     - Next state",
    ]
    for (source, target), events in edges(table).items():
        rows += [
            f"   * - ``{source}``",
            "     - " + ", ".join(f"``{e}``" for e in events),
            f"     - ``{target}``",
        ]
    return rows


class StateDiagram(SphinxDirective):
    """``.. smtp-state-diagram:: [module:NAME]`` with options ``:table:`` and ``:alt:``."""

    optional_arguments = 1
    option_spec = {"table": directives.flag, "alt": directives.unchanged}

    def run(self) -> list[Node]:
        spec = self.arguments[0] if self.arguments else DEFAULT_TABLE
        try:
            table, module = load_table(spec)
            dot = to_dot(table, module)
        except (ImportError, AttributeError, TypeError) as exc:
            raise self.error(f"smtp-state-diagram: cannot read {spec}: {exc}") from exc
        source_file = inspect.getsourcefile(module)
        if source_file:
            self.env.note_dependency(source_file)  # rebuild the page when the table changes
        result: list[Node] = [self.diagram(dot)]
        if not table:
            result.append(nodes.paragraph(text=f"({spec} is empty: no transitions yet.)"))
        if "table" in self.options and table:
            holder = nodes.container()
            self.state.nested_parse(StringList(table_rst(table)), self.content_offset, holder)
            result.extend(holder.children)
        return result

    def diagram(self, dot: str) -> Node:
        if shutil.which(self.config.graphviz_dot):
            node = graphviz()
            node["code"] = dot
            node["options"] = {"docname": self.env.docname}
            node["alt"] = self.options.get("alt", "State diagram of the SMTP client")
            self.set_source_info(node)
            return node
        logger.info(
            "smtp-state-diagram: %r not found; showing the Graphviz source",
            self.config.graphviz_dot,
            location=self.get_location(),
        )
        block = nodes.literal_block(dot, dot)
        block["language"] = "dot"
        return block


# --- a toctree that tolerates pages not written yet ----------------------------------------

_EXPLICIT_TITLE = re.compile(r"^(.+?)\s*(?<!\x00)<(.*?)>$", re.DOTALL)
_GLOB = re.compile(r"[*?\[]")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://")


class ToctreeExisting(TocTree):
    """``toctree`` whose entries naming missing pages (or matching nothing) are dropped."""

    def run(self) -> list[Node]:
        kept = StringList()
        for source, offset, line in self.content.xitems():
            if self.present(line.strip()):
                kept.append(line, source, offset)
            else:
                logger.verbose("toctree-existing: skipping %r (no such page yet)", line.strip())
        self.content = kept
        return super().run()

    def present(self, entry: str) -> bool:
        if not entry or entry == "self" or _URL.match(entry):
            return True
        match = _EXPLICIT_TITLE.match(entry)
        target = match.group(2) if match else entry
        docname = self.absolute(target)
        if "glob" in self.options and _GLOB.search(target) and not match:
            return bool(patfilter(self.env.found_docs - {self.env.docname}, docname))
        return docname in self.env.found_docs

    def absolute(self, target: str) -> str:
        for suffix in self.config.source_suffix:
            target = target.removesuffix(suffix)
        if target.startswith("/"):
            return target[1:]
        base = self.env.docname.rpartition("/")[0]
        return f"{base}/{target}" if base else target


# --- public reference targets --------------------------------------------------------------


def public_candidates(target: str) -> Iterable[str]:
    """Public names a private or bare target may be documented under.

    ``trio_smtp._config.Security`` -> ``trio_smtp.Security``; ``trio_smtp.protocol._replies.
    Reply`` -> ``trio_smtp.protocol.Reply``; a bare ``Action`` (a type alias in an annotation)
    -> ``trio_smtp.testing.Action`` and the other public namespaces.
    """
    parts = target.split(".")
    if len(parts) == 1 and target.isidentifier():
        for namespace in PUBLIC_NAMESPACES:
            yield f"{namespace}.{target}"
        return
    private = [i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")]
    if parts[0] != "trio_smtp" or not private:
        return
    # The name starts after the defining module: inside a private package (``_client``) the
    # modules themselves need no underscore (``trio_smtp._client.client.SmtpClient``).
    module_end = max(
        (k for k in range(private[-1] + 1, len(parts)) if ".".join(parts[:k]) in sys.modules),
        default=private[-1] + 1,
    )
    rest = ".".join(parts[module_end:])
    if not rest:
        return
    yield ".".join([*parts[: private[0]], rest])
    for namespace in PUBLIC_NAMESPACES:
        yield f"{namespace}.{rest}"


def resolve_public(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Element
) -> Element | None:
    """``missing-reference``: retry a py reference under its public names.  A class
    reference may also land on a documented type alias (``py:data``), hence ``obj``."""
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    target = node.get("reftarget", "")
    for candidate in dict.fromkeys(public_candidates(target)):
        for reftype in dict.fromkeys((node["reftype"], "obj")):
            resolved = domain.resolve_xref(
                env, node["refdoc"], app.builder, reftype, candidate, node, contnode
            )
            if resolved is not None:
                return resolved
    if node["reftype"] == "class" and is_type_alias(target):
        return contnode  # an alias has nothing to link to; show its name as written
    return None


def is_type_alias(name: str) -> bool:
    """Whether a bare ``name`` is a module-level type alias in one of our modules
    (``Action: TypeAlias = "Respond | Hangup"``), as autodoc leaves it in annotations."""
    if not name.isidentifier():
        return False
    for module_name, module in list(sys.modules.items()):
        if module_name.split(".")[0] != "trio_smtp" or module is None:
            continue
        value = vars(module).get(name)
        if value is not None and is_alias_value(value):
            return True
    return False


# `type X = ...` (Python 3.12+) creates a TypeAliasType; older aliases are strings or unions.
ALIAS_TYPES: tuple[type, ...] = (str, types.UnionType) + (
    (typing.TypeAliasType,) if hasattr(typing, "TypeAliasType") else ()
)


def is_alias_value(value: object) -> bool:
    return isinstance(value, ALIAS_TYPES) or typing.get_origin(value) is not None


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.graphviz")
    app.add_directive("smtp-state-diagram", StateDiagram)
    app.add_directive("toctree-existing", ToctreeExisting)
    app.connect("missing-reference", resolve_public)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
