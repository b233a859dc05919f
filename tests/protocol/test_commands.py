"""Command serialisation and validation (RFC 5321 §4.1, §4.5.3), and the server-side parse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_smtp.protocol import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    Ehlo,
    EndOfData,
    Helo,
    LocalProtocolError,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Rset,
    StartTls,
    Vrfy,
    validate_address,
    validate_domain,
    xtext_encode,
)
from trio_smtp.protocol._syntax import _validate_address, check_text
from trio_smtp.testing import (
    parse_command_line,
    parse_path_and_params,
    xtext_decode,
)


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (Ehlo("client.example"), b"EHLO client.example\r\n"),
        (Ehlo("[192.0.2.1]"), b"EHLO [192.0.2.1]\r\n"),
        (Ehlo("[IPv6:2001:db8::1]"), b"EHLO [IPv6:2001:db8::1]\r\n"),
        (Helo("client.example"), b"HELO client.example\r\n"),
        (StartTls(), b"STARTTLS\r\n"),
        (Auth("PLAIN"), b"AUTH PLAIN\r\n"),
        (Auth("plain", b"\0user\0pw"), b"AUTH PLAIN AHVzZXIAcHc=\r\n"),
        (Auth("EXTERNAL", b""), b"AUTH EXTERNAL =\r\n"),
        (AuthResponse(b"secret"), b"c2VjcmV0\r\n"),
        (AuthResponse(b""), b"\r\n"),
        (AuthResponse(cancel=True), b"*\r\n"),
        (Mail("a@example.org"), b"MAIL FROM:<a@example.org>\r\n"),
        (Mail(""), b"MAIL FROM:<>\r\n"),
        (Mail("a@b.example", size=1234), b"MAIL FROM:<a@b.example> SIZE=1234\r\n"),
        (Mail("a@b.example", body="8BITMIME"), b"MAIL FROM:<a@b.example> BODY=8BITMIME\r\n"),
        (
            Mail("a@b.example", ret="HDRS", envid="id+1=x y", requiretls=True),
            b"MAIL FROM:<a@b.example> RET=HDRS ENVID=id+2B1+3Dx+20y REQUIRETLS\r\n",
        ),
        (Rcpt("b@example.org"), b"RCPT TO:<b@example.org>\r\n"),
        (Rcpt("Postmaster"), b"RCPT TO:<Postmaster>\r\n"),
        (
            Rcpt("b@example.org", notify=("success", "FAILURE"), orcpt="b+x@example.org"),
            b"RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.org\r\n",
        ),
        (Rcpt("b@example.org", notify=("NEVER",)), b"RCPT TO:<b@example.org> NOTIFY=NEVER\r\n"),
        (Data(), b"DATA\r\n"),
        (Bdat(b"hello"), b"BDAT 5\r\n"),
        (Bdat(memoryview(b"hello world"), last=True), b"BDAT 11 LAST\r\n"),
        (Bdat(b"", last=True), b"BDAT 0 LAST\r\n"),
        (Rset(), b"RSET\r\n"),
        (Noop(), b"NOOP\r\n"),
        (Vrfy("postmaster"), b"VRFY postmaster\r\n"),
        (Quit(), b"QUIT\r\n"),
    ],
)
def test_serialisation(command: Command, wire: bytes) -> None:
    assert command.to_bytes() == wire


def test_smtputf8_mail_and_rcpt() -> None:
    assert Mail("jörg@bücher.example", smtputf8=True).to_bytes() == (
        "MAIL FROM:<jörg@bücher.example> SMTPUTF8\r\n".encode()
    )
    assert Rcpt("用户@例子.广告").to_bytes(smtputf8=True) == "RCPT TO:<用户@例子.广告>\r\n".encode()


def test_mail_smtputf8_comes_from_the_command_itself() -> None:
    # RFC 6531 §3.4: the SMTPUTF8 parameter is what allows the non-ASCII sender.
    with pytest.raises(LocalProtocolError, match="not ASCII"):
        Mail("jörg@example.org").to_bytes(smtputf8=True)


@pytest.mark.parametrize(
    "command",
    [
        Mail("a@b.example\r\nRCPT TO:<evil@x.example>"),
        Mail("a@b.example\n"),
        Mail("a\x00@b.example"),
        Mail("a@b.exa\x7fmple"),
        Rcpt("a@b.example\rDATA"),
        Rcpt("a@b.example", orcpt="x\r\ny"),
        Ehlo("client\r\nMAIL FROM:<x@y>"),
        Helo("host\x00"),
        Vrfy("x\r\nDATA"),
        Vrfy("x\x1b[0m"),
        Auth("PLAIN\r\n"),
        Mail("a@b.example", envid="x\ny"),
        Rcpt("a@b.example", notify=("SUCCESS\r\n",)),
    ],
)
def test_control_characters_are_refused(command: Command) -> None:
    with pytest.raises(LocalProtocolError):
        command.to_bytes(smtputf8=True)


def test_refusal_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Mail("a@b.example\r\n").to_bytes()


@pytest.mark.parametrize(
    "command",
    [
        Mail("jörg@example.org"),
        Mail("a@bücher.example"),
        Rcpt("jörg@example.org"),
        Vrfy("jörg"),
        Ehlo("bücher.example"),
        Rcpt("a@b.example", orcpt="jörg@example.org"),
        Mail("a@b.example", envid="é"),
    ],
)
def test_non_ascii_refused_without_smtputf8(command: Command) -> None:
    with pytest.raises(LocalProtocolError):
        command.to_bytes()


def test_ehlo_is_ascii_even_with_smtputf8() -> None:
    # RFC 6531 §3.7.1: EHLO goes out before SMTPUTF8 is known.
    with pytest.raises(LocalProtocolError):
        Ehlo("bücher.example").to_bytes(smtputf8=True)


def test_length_limits() -> None:
    local64, local65 = "a" * 64, "a" * 65
    assert Rcpt(f"{local64}@b.example").to_bytes()
    with pytest.raises(LocalProtocolError, match="local part"):
        Rcpt(f"{local65}@b.example").to_bytes()
    label = "d" * 63
    domain = ".".join([label] * 3 + ["e" * 61])  # 253 octets
    assert validate_domain(domain) == domain
    with pytest.raises(LocalProtocolError, match="255"):
        validate_domain(domain + ".eeee")  # 258 octets
    with pytest.raises(LocalProtocolError, match="label"):
        validate_domain("d" * 64 + ".example")
    # A path is at most 256 octets with its brackets: 64 + 1 + 189 + 2 = 256.
    domain189 = ".".join(["d" * 63, "d" * 63, "d" * 61])
    assert len(f"<{local64}@{domain189}>") == 256
    assert Rcpt(f"{local64}@{domain189}").to_bytes()
    with pytest.raises(LocalProtocolError, match="path"):
        Rcpt(f"{local64}@{domain189}d").to_bytes()


def test_length_limits_in_addresses() -> None:
    # Each limit at its edge inside a whole address (the everyday form takes a fast path).
    local64 = ".".join(["a" * 31, "b" * 32])
    assert validate_address(f"{local64}@{'d' * 63}.example") == f"{local64}@{'d' * 63}.example"
    for address in (f"{local64}c@b.example", f"user@{'d' * 64}.example", f"u@x.{'d' * 64}"):
        with pytest.raises(LocalProtocolError, match="longer"):
            validate_address(address)


def test_limits_count_octets_not_characters() -> None:
    local = "é" * 33  # 33 characters, 66 octets
    with pytest.raises(LocalProtocolError, match="local part"):
        Rcpt(f"{local}@b.example").to_bytes(smtputf8=True)


def test_command_line_limit_is_512_octets() -> None:
    # "VRFY " + 505 + CRLF = 512.
    assert len(Vrfy("x" * 505).to_bytes()) == 512
    with pytest.raises(LocalProtocolError, match="512"):
        Vrfy("x" * 506).to_bytes()
    # A MAIL with long parameters can overflow even with a valid path.
    sender = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + ".example"
    assert Mail(sender, envid="x" * 100).to_bytes()  # 321 octets
    with pytest.raises(LocalProtocolError, match="512"):
        Mail(sender, envid="+" * 100).to_bytes()  # each "+" becomes "+2B": 521 octets


def test_auth_initial_response_must_fit_in_512() -> None:
    with pytest.raises(LocalProtocolError, match="512"):
        Auth("PLAIN", b"x" * 400).to_bytes()


def test_auth_response_may_exceed_512() -> None:
    # RFC 4954 §4: continuation lines are not limited to 512 octets.
    line = AuthResponse(b"x" * 3000).to_bytes()
    assert len(line) == 4002
    with pytest.raises(LocalProtocolError):
        AuthResponse(b"x" * 9300).to_bytes()


@pytest.mark.parametrize("mechanism", ["", "A" * 21, "PL AIN", "PLAIN!", "ÄUTH"])
def test_bad_sasl_mechanism(mechanism: str) -> None:
    with pytest.raises(LocalProtocolError):
        Auth(mechanism).to_bytes()


@pytest.mark.parametrize(
    "address",
    [
        "user@example.org",
        "first.last@example.org",
        "a!#$%&'*+-/=?^_`{|}~@example.org",
        '"quoted string"@example.org',
        '"with \\" escaped"@example.org',
        '"at@inside"@example.org',
        "user@[192.0.2.1]",
        "user@[IPv6:::1]",
        "user@sub-domain.ex-ample.org",
        "user@under_score.example",
        "user@localhost",
    ],
)
def test_valid_addresses(address: str) -> None:
    assert validate_address(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "",
        "no-at-sign",
        "@example.org",
        "user@",
        "user@@example.org",
        "<user@example.org>",
        "user@example.org>",
        "us er@example.org",
        ".user@example.org",
        "user.@example.org",
        "us..er@example.org",
        '"unterminated@example.org',
        "user@-example.org",
        "user@example-.org",
        "user@example..org",
        "user@example.org.",
        "user@exa mple.org",
        "user@[300.1.1.1]",
        "user@[IPv6:zz::1]",
        "user@[192.0.2.1",
        "user@[]",
        42,
    ],
)
def test_invalid_addresses(address: str) -> None:
    with pytest.raises(LocalProtocolError):
        validate_address(address)


# Addresses near every rule: odd characters, and lengths around the 64/63/256 limits.
_odd = st.text(st.sampled_from(list('aZ9.-_@"\\ <>[]:é\x00\t\r\n+!~\x85')), max_size=12)
_lengths = st.one_of(st.integers(0, 8), st.integers(60, 66))
_run = st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "-", "."]), _lengths)
_part = st.lists(st.one_of(_odd, _run), min_size=1, max_size=4).map(".".join)
_addresses = st.one_of(_odd, st.builds(lambda lp, d: f"{lp}@{d}", _part, _part))


def _outcome(check: object, address: object, **kwargs: object) -> object:
    try:
        return check(address, **kwargs)  # type: ignore[operator]
    except LocalProtocolError:
        return "refused"


@given(_addresses, st.booleans(), st.booleans())
def test_fast_address_check_agrees_with_the_rules(
    address: str, smtputf8: bool, allow_empty: bool
) -> None:
    # validate_address takes a fast path for everyday addresses; it must never accept
    # what the rule-by-rule check refuses, nor refuse what it accepts.
    kwargs = {"smtputf8": smtputf8, "allow_empty": allow_empty}
    expected = _outcome(_validate_address, address, **kwargs)
    assert _outcome(validate_address, address, **kwargs) == expected


@given(st.text(max_size=20), st.booleans())
def test_check_text_refuses_exactly_controls_and_unannounced_non_ascii(
    text: str, smtputf8: bool
) -> None:
    bad = any(c < " " or "\x7f" <= c <= "\x9f" for c in text)
    bad = bad or (not smtputf8 and not text.isascii())
    assert _outcome(check_text, text, what="x", smtputf8=smtputf8) == ("refused" if bad else text)


def test_null_reverse_path_only_when_allowed() -> None:
    assert validate_address("", allow_empty=True) == ""
    with pytest.raises(LocalProtocolError):
        Rcpt("").to_bytes()


def test_general_address_literal() -> None:
    assert validate_domain("[x400:some-thing]") == "[x400:some-thing]"
    with pytest.raises(LocalProtocolError):
        validate_domain("[x400:]")
    with pytest.raises(LocalProtocolError):
        validate_domain("[192.0.2.1]", allow_literal=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": -1},
        {"size": True},
        {"size": 1.5},
        {"body": "9BITMIME"},
        {"ret": "ALL"},
        {"envid": ""},
        {"envid": "x" * 101},
    ],
)
def test_bad_mail_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        Mail("a@b.example", **kwargs).to_bytes()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "notify", [(), ("NEVER", "SUCCESS"), ("SUCCESS", "SUCCESS"), ("SOMETIMES",)]
)
def test_bad_notify(notify: tuple[str, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        Rcpt("a@b.example", notify=notify).to_bytes()


def test_end_of_data_is_not_a_command_line() -> None:
    with pytest.raises(LocalProtocolError):
        EndOfData().to_bytes()


def test_empty_vrfy_refused() -> None:
    with pytest.raises(LocalProtocolError):
        Vrfy(" ").to_bytes()


def test_ends_group() -> None:
    # RFC 2920 §3.1: these may be followed by more commands before their replies.
    assert not Mail.ends_group and not Rcpt.ends_group and not Rset.ends_group
    assert not Bdat.ends_group
    for command in (Ehlo, Helo, StartTls, Auth, AuthResponse, Data, Noop, Vrfy, Quit):
        assert command.ends_group


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("plain", "plain"),
        ("a+b", "a+2Bb"),
        ("a=b", "a+3Db"),
        ("a b", "a+20b"),
        ("é", "+C3+A9"),
        ("", ""),
    ],
)
def test_xtext(text: str, encoded: str) -> None:
    assert xtext_encode(text) == encoded
    assert xtext_decode(encoded) == text


def test_client_output_parses_back() -> None:
    mail = Mail("a@b.example", size=10, body="8BITMIME", ret="FULL", envid="x+y")
    verb, argument = parse_command_line(mail.to_bytes())
    address, params = parse_path_and_params(argument)
    assert (verb, address) == ("MAIL", "a@b.example")
    assert params["ENVID"] is not None and xtext_decode(params["ENVID"]) == "x+y"
    assert params == {"SIZE": "10", "BODY": "8BITMIME", "RET": "FULL", "ENVID": "x+2By"}
