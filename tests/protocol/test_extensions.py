"""EHLO reply -> Extensions (RFC 5321 §4.1.1.1 and the extensions' RFCs)."""

from __future__ import annotations

import pytest

from trio_smtp.protocol import Extensions, LocalProtocolError, Reply


def ehlo(*lines: str) -> Extensions:
    return Extensions.from_ehlo_reply(Reply(250, ("mx.example greets you", *lines)))


def test_server_name_and_keywords() -> None:
    ext = ehlo("PIPELINING", "SIZE 10240000", "8BITMIME")
    assert ext.server_name == "mx.example"
    assert dict(ext.keywords) == {"PIPELINING": (), "SIZE": ("10240000",), "8BITMIME": ()}


def test_lookup_is_case_insensitive() -> None:
    ext = ehlo("pipelining", "Auth Login Plain")
    assert "PIPELINING" in ext and "Pipelining" in ext
    assert ext.params("auth") == ("Login", "Plain")
    assert "STARTTLS" not in ext
    assert 42 not in ext
    assert ext.params("STARTTLS") == ()


def test_flags() -> None:
    names = [
        "PIPELINING",
        "STARTTLS",
        "8BITMIME",
        "SMTPUTF8",
        "DSN",
        "CHUNKING",
        "BINARYMIME",
        "ENHANCEDSTATUSCODES",
        "REQUIRETLS",
    ]
    empty = Extensions()
    full = ehlo(*names)
    for name in names:
        attr = name.lower().replace("8bit", "eightbit")
        assert getattr(full, attr) is True, name
        assert getattr(empty, attr) is False, name
        assert getattr(ehlo(*(n for n in names if n != name)), attr) is False, name


@pytest.mark.parametrize(
    ("size_line", "expected"),
    [
        ("SIZE 10240000", 10240000),
        ("SIZE 1", 1),
        ("SIZE", None),
        ("SIZE 0", None),
        ("SIZE -5", None),
        ("SIZE 10MB", None),
        ("SIZE ten", None),
        ("SIZE ١٢٣", None),  # non-ASCII digits
        ("SIZE 9223372036854775807", 2**63 - 1),
        ("SIZE 9223372036854775808", None),
        ("SIZE " + "9" * 3000, None),
    ],
)
def test_max_size(size_line: str, expected: int | None) -> None:
    assert ehlo(size_line).max_size == expected


def test_max_size_absent() -> None:
    assert ehlo("PIPELINING").max_size is None


def test_auth_mechanisms_both_forms() -> None:
    ext = ehlo("AUTH PLAIN login", "AUTH=LOGIN CRAM-MD5")
    assert ext.auth_mechanisms == frozenset({"PLAIN", "LOGIN", "CRAM-MD5"})
    assert "AUTH" in ext


def test_auth_old_form_alone() -> None:
    ext = ehlo("AUTH=PLAIN LOGIN")
    assert ext.auth_mechanisms == frozenset({"PLAIN", "LOGIN"})


def test_garbage_lines_are_skipped() -> None:
    ext = ehlo("", "   ", "-BAD", "!!!", "ÜBER", "PIPELINING", "X-CUSTOM-1 a b")
    assert set(ext.keywords) == {"PIPELINING", "X-CUSTOM-1"}
    assert ext.params("x-custom-1") == ("a", "b")


def test_repeated_keyword_keeps_the_first() -> None:
    assert ehlo("SIZE 100", "SIZE 200").max_size == 100


def test_immutable() -> None:
    ext = ehlo("PIPELINING")
    with pytest.raises(TypeError):
        ext.keywords["STARTTLS"] = ()  # type: ignore[index]
    with pytest.raises(AttributeError):
        ext.server_name = "other"  # type: ignore[misc]
    assert ext == ehlo("PIPELINING")
    hash(ext)


def test_single_line_reply() -> None:
    ext = Extensions.from_ehlo_reply(Reply(250, ("mx.example",)))
    assert ext.server_name == "mx.example" and not ext.keywords


def test_not_a_250_reply() -> None:
    with pytest.raises(LocalProtocolError):
        Extensions.from_ehlo_reply(Reply(502, ("no EHLO",)))
