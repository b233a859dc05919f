"""Sphinx configuration for trio_smtp's documentation.

Built with ``nox -s docs`` (``sphinx-build -W -n``): every warning fails the build and every
unresolved cross-reference is a warning.  No intersphinx: CI has no internet beyond the package
registries, so references to the standard library and Trio are listed in
``nitpick_ignore_regex`` below instead of being resolved against remote inventories.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
# Autodoc imports the package; prefer this checkout over any installed copy.
sys.path.insert(0, str(HERE.parent))

import trio_smtp  # noqa: E402

project = "trio_smtp"
author = "trio_smtp contributors"
copyright = "trio_smtp contributors"
release = trio_smtp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "sphinx.ext.viewcode",
    "sphinxcontrib_trio",
    "trio_smtp_docs",  # docs/_ext: state diagram, tolerant toctree, public reference targets
]

exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_static_path: list[str] = []

html_theme = "furo"
html_title = f"trio_smtp {release}"
pygments_style = "default"
pygments_dark_style = "monokai"

default_role = "py:obj"
primary_domain = "py"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}
# Names in signatures are shown unqualified ("Reply", not "trio_smtp.protocol._replies.Reply").
python_use_unqualified_type_names = True

graphviz_output_format = "svg"

# -n: every reference must resolve.  These targets live outside this project (stdlib, Trio)
# and cannot be resolved without network access to their inventories.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(trio|ssl|email|enum|collections|types|os|pathlib|socket|datetime|dataclasses)(\..+)?",
    ),
    (r"py:.*", r"mailbox(\..+)?"),
    (r"py:.*", r"(ssl\.)?SSLContext|(email\.message\.)?EmailMessage|Enum|IntEnum|TracebackType"),
    (r"py:.*", r"(Mapping|Sequence|Iterable|Iterator|AsyncIterable|AsyncIterator|Callable)"),
    (r"py:.*", r"(BinaryIO|IO|Path|PathLike|StrPath|Buffer|ReadableBuffer)"),
    # Private base classes shown by show-inheritance (e.g. the SCRAM and OAuth bases of the
    # public mechanisms in trio_smtp.sasl): documented through their public subclasses.
    (r"py:class", r"trio_smtp\.(\w+\.)*_[A-Z]\w*"),
    # The base of the protocol core's frozen value classes (docs/design.rst, "Import cost").
    (r"py:class", r"trio_smtp\.protocol\._frozen\.Frozen"),
    # Structural types of the message sources SmtpClient.send accepts (anything with
    # .read(n) -> bytes, sync or async): described in send()'s docstring, not importable API.
    (r"py:class", r"trio_smtp\._message\.sources\.Supports(Async)?Read"),
    # The type variable of SendCompleted[T] (the token's type): not a documented object.
    (r"py:(class|obj)", r"trio_smtp\._results\.T"),
    # What OutcomeStream is built from (the pool and the client build it, users never do).
    (r"py:class", r"trio_smtp\._client\.streamed\.RecordedItems"),
]
