"""The server's side of the grammar (trio_smtp.testing._grammar): reading back what the
protocol core writes.  Round trips with the client side stay in tests/protocol/."""

from __future__ import annotations

import pytest

from trio_smtp.protocol import LocalProtocolError, RemoteProtocolError
from trio_smtp.testing import (
    CommandSyntaxError,
    decode_data,
    format_reply,
    parse_command_line,
    parse_path_and_params,
    xtext_decode,
)


def test_xtext_decode_accepts_lower_case_hex() -> None:
    assert xtext_decode("a+2bb") == "a+b"


@pytest.mark.parametrize("bad", ["+", "+2", "+ZZ", "a b", "a=b", "+FF"])
def test_xtext_decode_refuses_malformed(bad: str) -> None:
    with pytest.raises(LocalProtocolError):
        xtext_decode(bad)


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        (b"EHLO client.example\r\n", ("EHLO", "client.example")),
        (b"mail FROM:<a@b> SIZE=10\r\n", ("MAIL", "FROM:<a@b> SIZE=10")),
        (b"QUIT\r\n", ("QUIT", "")),
        (b"noop\n", ("NOOP", "")),
        (b"RCPT TO:<a@b>  \r\n", ("RCPT", "TO:<a@b>")),
        ("MAIL FROM:<jörg@x> SMTPUTF8\r\n".encode(), ("MAIL", "FROM:<jörg@x> SMTPUTF8")),
    ],
)
def test_parse_command_line(line: bytes, parsed: tuple[str, str]) -> None:
    assert parse_command_line(line) == parsed


@pytest.mark.parametrize(
    "line",
    [b"\r\n", b"MAIL FROM:<a@b>\rRCPT TO:<c@d>\r\n", b"NO\x00OP\r\n", b"\xff\xfe\r\n", b"25O\r\n"],
)
def test_parse_command_line_refuses(line: bytes) -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command_line(line)
    assert info.value.code == 500
    assert isinstance(info.value, RemoteProtocolError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("argument", "address", "params"),
    [
        ("FROM:<a@b.example>", "a@b.example", {}),
        ("FROM:<>", "", {}),
        ("from: <a@b.example>", "a@b.example", {}),
        ("TO:<@relay1,@relay2:u@c.example>", "u@c.example", {}),
        (
            "FROM:<a@b> SIZE=100 body=8bitmime SMTPUTF8",
            "a@b",
            {"SIZE": "100", "BODY": "8bitmime", "SMTPUTF8": None},
        ),
        ('TO:<"a >b"@c> NOTIFY=NEVER', '"a >b"@c', {"NOTIFY": "NEVER"}),
        ("<x@y>", "x@y", {}),
    ],
)
def test_parse_path_and_params(argument: str, address: str, params: dict[str, str | None]) -> None:
    assert parse_path_and_params(argument) == (address, params)


@pytest.mark.parametrize(
    "argument",
    [
        "FROM:a@b",
        "FROM:<a@b",
        "FROM:<a@b>SIZE=1",
        "FROM:<a@b> SIZE=",
        "FROM:<a@b> =1",
        "FROM:<a@b> SIZE=1 size=2",
        "FROM:<a@b> BAD_KEY=1",
        "TO:<@relay-without-colon>",
        "",
    ],
)
def test_parse_path_and_params_refuses(argument: str) -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_path_and_params(argument)
    assert info.value.code == 501


def test_decode_data_unstuffs_line_starts_only() -> None:
    assert decode_data(b"..a\r\nb..c\r\n...\r\n") == b".a\r\nb..c\r\n..\r\n"
    assert decode_data(b"") == b""


def test_decode_data_refuses_the_terminator_line() -> None:
    with pytest.raises(ValueError):
        decode_data(b".\r\n")
    with pytest.raises(ValueError):
        decode_data(b"a\r\n.\r\nb\r\n")


def test_format_reply() -> None:
    assert format_reply(250) == b"250\r\n"
    assert format_reply(250, "ok") == b"250 ok\r\n"
    assert format_reply(250, "a\nb") == b"250-a\r\n250 b\r\n"
    assert format_reply(250, ["a", "b", "c"]) == b"250-a\r\n250-b\r\n250 c\r\n"
    assert format_reply(550, "Grüße") == "550 Grüße\r\n".encode()


@pytest.mark.parametrize("code", [199, 600, 99, 1000, True, "250"])
def test_format_reply_rejects_bad_code(code: object) -> None:
    with pytest.raises(LocalProtocolError):
        format_reply(code, "x")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["a\rb", "a\x00b", ["a\nb"], ["ok", "\x1b[31m"]])
def test_format_reply_rejects_control_characters(text: str | list[str]) -> None:
    with pytest.raises(LocalProtocolError):
        format_reply(250, text)
