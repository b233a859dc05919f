"""smtp://, smtps://, smtp+unix:// and pickup:// URLs -> SmtpClient keyword arguments."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import trio

from trio_smtp import DeliveryMethod, Security
from trio_smtp._client.client import SmtpClient
from trio_smtp._io.url import parse_smtp_url


def test_smtps_is_implicit_tls_on_465() -> None:
    assert parse_smtp_url("smtps://mail.example.com") == {
        "host": "mail.example.com",
        "port": 465,
        "security": Security.IMPLICIT_TLS,
        "credentials": None,
        "local_hostname": None,
        "unix_socket": None,
        "proxy": None,
    }


def test_smtp_is_required_starttls_on_587() -> None:
    config = parse_smtp_url("smtp://mail.example.com/")
    assert config["security"] is Security.STARTTLS
    assert config["port"] == 587


@pytest.mark.parametrize(
    ("query", "security", "port"),
    [
        ("tls=starttls", Security.STARTTLS, 587),
        ("tls=opportunistic", Security.STARTTLS_OPPORTUNISTIC, 25),
        ("tls=none", Security.NONE, 25),
        ("tls=NONE", Security.NONE, 25),
    ],
)
def test_tls_parameter_for_smtp(query: str, security: Security, port: int) -> None:
    config = parse_smtp_url(f"smtp://mail.example.com?{query}")
    assert config["security"] is security
    assert config["port"] == port


def test_smtps_accepts_redundant_tls_implicit() -> None:
    assert parse_smtp_url("smtps://h?tls=implicit")["security"] is Security.IMPLICIT_TLS


@pytest.mark.parametrize(
    "url",
    [
        "smtps://h?tls=none",
        "smtps://h?tls=starttls",
        "smtps://h?tls=opportunistic",
        "smtp://h?tls=implicit",
    ],
)
def test_contradictory_tls_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="contradicts"):
        parse_smtp_url(url)


def test_explicit_port_kept() -> None:
    assert parse_smtp_url("smtp://h:2525?tls=none")["port"] == 2525
    assert parse_smtp_url("smtps://h:10465")["port"] == 10465


def test_credentials_percent_decoded() -> None:
    config = parse_smtp_url("smtps://us%40er%3Aname:p%40ss%3Aw%2Fo%25rd%20%C3%A9@mail.example.com")
    assert config["credentials"] == ("us@er:name", "p@ss:w/o%rd é")
    assert config["host"] == "mail.example.com"


def test_plus_is_not_a_space() -> None:
    assert parse_smtp_url("smtps://a+b:c+d@h")["credentials"] == ("a+b", "c+d")


def test_raw_reserved_characters_in_password_are_read_whole() -> None:
    # Only the last "@" ends the user information.
    config = parse_smtp_url("smtps://user:p/a?s#s@w@rd@h:1465")
    assert config["credentials"] == ("user", "p/a?s#s@w@rd")
    assert (config["host"], config["port"]) == ("h", 1465)


def test_empty_password_is_allowed() -> None:
    assert parse_smtp_url("smtps://user:@h")["credentials"] == ("user", "")


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("smtp://[::1]:2525", "::1", 2525),
        ("smtps://[2001:db8::1]", "2001:db8::1", 465),
        ("smtp://u:p@[fe80::1%25eth0]:25", "fe80::1%eth0", 25),
        ("smtp://127.0.0.1:25", "127.0.0.1", 25),
    ],
)
def test_address_literals(url: str, host: str, port: int) -> None:
    config = parse_smtp_url(url)
    assert (config["host"], config["port"]) == (host, port)


def test_local_hostname_parameter() -> None:
    config = parse_smtp_url("smtp://h?tls=none&local_hostname=client.example.org")
    assert config["local_hostname"] == "client.example.org"
    assert parse_smtp_url("smtps://h?local_hostname=%5B127.0.0.1%5D")["local_hostname"] == (
        "[127.0.0.1]"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "unsupported URL scheme 'http'"),
        ("mail.example.com", "not an SMTP URL"),
        ("smtp://h?foo=1", "unknown URL parameter 'foo'"),
        ("smtp://h?tls=none&tls=none", "given twice"),
        ("smtp://h?tls=maybe", "tls must be one of"),
        ("smtp://h?tls", "malformed query"),
        ("smtp://h/path", "no path"),
        ("smtp://h#frag", "no fragment"),
        ("smtp://", "no host"),
        ("smtp://:25", "no host"),
        ("smtp://h:0", "from 1 to 65535"),
        ("smtp://h:65536", "from 1 to 65535"),
        ("smtp://h:-1", "must be a number"),
        ("smtp://h:smtp", "must be a number"),
        ("smtp://h:", "must be a number"),
        ("smtp://[::1", "unterminated"),
        ("smtp://[not-ip]:25", "not an IPv6 address"),
        ("smtp://[::1]x", "unexpected text"),
        ("smtp://h\r\n:25", "control characters"),
        ("smtp://h ost", "white space"),
        ("smtp://user@h", "no password"),
        ("smtp://:pw@h", "no user name"),
        ("smtp://@h", "empty user name"),
        ("smtp://h%2Fx", "invalid host name"),
        ("smtp://h?local_hostname=", "invalid local_hostname"),
        ("smtp://h?local_hostname=a%0Ab", "invalid local_hostname"),
        ("smtp+unix://mail.example.com/x", "not a host"),
        ("smtp+unix://", "absolute path"),
        ("smtp+unix:///", "absolute path"),
        ("smtp+unix:///run/a%0Ab.sock", "absolute path"),
        ("smtp+unix:///run/smtp.sock?tls=starttls", "no tls="),
        ("smtp+unix:///run/smtp.sock?port=25", "unknown URL parameter"),
    ],
)
def test_invalid_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_smtp_url(url)


def test_non_string_is_type_error() -> None:
    with pytest.raises(TypeError):
        parse_smtp_url(b"smtp://h")  # type: ignore[arg-type]


SECRET = "Sup3rS3cret"


@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SECRET}@h",
        f"smtps://user:{SECRET}@h?tls=none",
        f"smtp://user:{SECRET}@h:0",
        f"smtp://user:{SECRET}@h:port",
        f"smtp://user:{SECRET}@h?bogus=1",
        f"smtp://user:{SECRET}@h/path",
        f"smtp://user:{SECRET}@[::1",
        f"smtp://user:{SECRET}%FF@h",  # not UTF-8 once decoded
        f"smtp://user:{SECRET}@h\n",
        f"smtp://user:{SECRET}",  # no "@": the password looks like a port
        f"smtp://user:{SECRET}/x?tls=none",
    ],
)
def test_password_never_in_error_messages(url: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_smtp_url(url)
    seen = [info.value, info.value.__cause__, info.value.__context__]
    for exc in seen:
        if exc is not None:
            assert SECRET not in str(exc)
            assert SECRET not in repr(exc)
            assert SECRET[:5] not in str(exc)


def test_keys_match_the_client_constructor() -> None:
    parameters = inspect.signature(SmtpClient.__init__).parameters
    assert set(parse_smtp_url("smtps://u:p@h")) <= set(parameters)
    assert set(parse_smtp_url("smtp+unix:///s")) <= set(parameters)
    assert set(parse_smtp_url("pickup:///d")) <= set(parameters)


def test_smtp_unix_is_a_socket_path_without_tls() -> None:
    assert parse_smtp_url("smtp+unix:///var/run/smtp.sock") == {
        "host": "",
        "port": None,
        "security": Security.NONE,
        "credentials": None,
        "local_hostname": None,
        "unix_socket": "/var/run/smtp.sock",
        "proxy": None,
    }


def test_smtp_unix_with_credentials_and_encoded_path() -> None:
    config = parse_smtp_url(
        "smtp+unix://us%40er:p%2Fw@/run/my%20mail%40host.sock?local_hostname=c.example.org"
    )
    assert config["credentials"] == ("us@er", "p/w")
    assert config["unix_socket"] == "/run/my mail@host.sock"
    assert config["local_hostname"] == "c.example.org"


def test_from_url_builds_a_unix_socket_client() -> None:
    client = SmtpClient.from_url("smtp+unix://user:pw@/run/smtp.sock")
    assert client.statistics().connections_opened == 0  # nothing happens before a send


def test_pickup_is_a_directory_without_a_server() -> None:
    assert parse_smtp_url("pickup:///var/spool/my%20mail") == {
        "host": "",
        "port": None,
        "security": Security.NONE,
        "credentials": None,
        "local_hostname": None,
        "unix_socket": None,
        "proxy": None,
        "delivery_method": DeliveryMethod.PICKUP_DIRECTORY,
        "pickup_directory": "/var/spool/my mail",
    }


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("pickup://", "absolute path"),
        ("pickup:///", "absolute path"),
        ("pickup://host/dir", "not a user or host"),
        ("pickup://u:p@/dir", "not a user or host"),
        ("pickup:///dir?tls=none", "no parameters"),
    ],
)
def test_bad_pickup_urls(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_smtp_url(url)


async def test_from_url_pickup_writes_an_eml_file(tmp_path: Path) -> None:
    async with SmtpClient.from_url(f"pickup://{tmp_path}") as client:
        result = await client.send(
            b"Subject: picked\r\n\r\nup\r\n", sender="a@example.org", recipients=["b@example.net"]
        )
    assert list(result.accepted) == ["b@example.net"]
    (written,) = await trio.Path(tmp_path).glob("*.eml")
    assert b"Subject: picked" in await written.read_bytes()
