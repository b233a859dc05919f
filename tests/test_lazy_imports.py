"""What importing trio_smtp loads, checked in a fresh interpreter each time.

docs/typing.rst promises that :mod:`trio_smtp.protocol` never imports Trio; the package's
``__init__`` loads its public names on first use (PEP 562), so the promise holds for
``import trio_smtp.protocol`` through the real package, not only for the protocol's own
files (tests/protocol/test_no_trio.py checks those).  The pytest plugin imports trio_smtp
in this process, so every check runs in a subprocess.
"""

from __future__ import annotations

from helpers.interpreter import loaded_after

import trio_smtp


def is_trio(module: str) -> bool:
    return module == "trio" or module.startswith("trio.")


def test_import_protocol_imports_neither_trio_nor_the_client() -> None:
    modules = loaded_after("import trio_smtp.protocol as p\np.ClientConnection()")
    assert not [m for m in modules if is_trio(m)]
    ours = {m for m in modules if m.startswith("trio_smtp")}
    assert ours == {"trio_smtp", "trio_smtp.protocol"} | {
        m for m in ours if m.startswith("trio_smtp.protocol.")
    }, ours


def test_import_trio_smtp_loads_only_the_package() -> None:
    modules = loaded_after("import trio_smtp")
    assert not [m for m in modules if is_trio(m)]
    assert [m for m in modules if m.startswith("trio_smtp")] == ["trio_smtp"]
    assert "email.message" not in modules


def test_a_public_name_loads_what_it_needs_on_first_use() -> None:
    modules = loaded_after("import trio_smtp\ntrio_smtp.SmtpClient('smtp.example.org')")
    assert "trio" in modules
    assert "trio_smtp._client.client" in modules


def test_every_public_name_resolves_in_a_fresh_interpreter() -> None:
    code = (
        "import trio_smtp\n"
        "missing = [n for n in trio_smtp.__all__ if getattr(trio_smtp, n, None) is None]\n"
        "assert not missing, missing\n"
        "from trio_smtp import *\n"
        "import trio_smtp.protocol, trio_smtp.sasl\n"
        "assert trio_smtp.Reply is trio_smtp.protocol.Reply"
    )
    loaded_after(code)


def test_smtputf8_patterns_are_compiled_only_when_used() -> None:
    # Their character classes span all of Unicode: compiling them at import cost ~15 ms.
    code = (
        "import trio_smtp.protocol._syntax as s\n"
        "assert s._local_utf8.cache_info().currsize == 0\n"
        "assert s._label_utf8.cache_info().currsize == 0\n"
        "s.validate_address('jos\u00e9@b\u00fccher.example', smtputf8=True)\n"
        "assert s._local_utf8.cache_info().currsize == 1"
    )
    loaded_after(code)


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        trio_smtp.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchName" in str(exc)
    else:
        raise AssertionError("trio_smtp.NoSuchName did not raise AttributeError")


def test_dir_lists_the_public_names() -> None:
    assert set(trio_smtp.__all__) <= set(dir(trio_smtp))
