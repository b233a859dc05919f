"""SCRAM-SHA-1 and OAUTHBEARER on the testing server, byte by byte over a raw socket: what
EHLO offers, the RFC 7628 failure exchange as it appears on the wire, and the OAUTHBEARER
message grammar (RFC 7628 §3.1) the server accepts and refuses."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from helpers.raw_client import RawClient, send_mail, start_session
from scramp import ScramClient

from trio_smtp.testing import ALL_MECHANISMS, DEFAULT_MECHANISMS, SmtpServer
from trio_smtp.testing._oauthbearer import BearerRequest, MalformedRequest, parse_request

TOKEN = "tok-123"
CREDENTIALS = {"alice@example.org": TOKEN}


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _bearer(token: str = TOKEN, header: str = "n,a=alice@example.org,") -> bytes:
    return f"{header}\x01host=127.0.0.1\x01port=25\x01auth=Bearer {token}\x01\x01".encode()


async def _session(server: SmtpServer) -> RawClient:
    client = await RawClient.connect(server.host, server.port)
    await start_session(client)
    return client


def _auth_line(reply_text: str) -> str:
    return next(line for line in reply_text.split("\n") if line.startswith("AUTH "))


# -- what is offered ------------------------------------------------------------------------


async def test_default_offer_is_unchanged_and_all_mechanisms_offers_both_new_ones() -> None:
    async with SmtpServer(tls="none", credentials=CREDENTIALS) as server:
        ehlo = await start_session(await RawClient.connect(server.host, server.port))
    assert _auth_line(ehlo.text) == "AUTH " + " ".join(DEFAULT_MECHANISMS)
    assert "SCRAM-SHA-1" not in DEFAULT_MECHANISMS and "OAUTHBEARER" not in DEFAULT_MECHANISMS
    every = SmtpServer(tls="none", credentials=CREDENTIALS, auth_mechanisms=ALL_MECHANISMS)
    async with every as server:
        ehlo = await start_session(await RawClient.connect(server.host, server.port))
    assert _auth_line(ehlo.text) == (
        "AUTH SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN OAUTHBEARER XOAUTH2"
    )


@pytest.mark.parametrize("offered", ["OAUTHBEARER", "SCRAM-SHA-1"])
async def test_a_new_mechanism_alone_is_the_only_one_accepted(offered: str) -> None:
    server = SmtpServer(tls="none", credentials=CREDENTIALS, auth_mechanisms=[offered.lower()])
    async with server:
        client = await _session(server)
        assert (await client.command(b"EHLO client.test\r\n")).lines[-1] == f"AUTH {offered}"
        plain = _b64(b"\0alice@example.org\0" + TOKEN.encode())
        assert (await client.command(b"AUTH PLAIN " + plain + b"\r\n")).code == 504
        other = "SCRAM-SHA-1" if offered == "OAUTHBEARER" else "OAUTHBEARER"
        assert (await client.command(f"AUTH {other}\r\n".encode())).code == 504
        await client.aclose()


async def test_default_offer_refuses_the_new_mechanisms() -> None:
    async with SmtpServer(tls="none", credentials=CREDENTIALS) as server:
        client = await _session(server)
        reply = await client.command(b"AUTH OAUTHBEARER " + _b64(_bearer()) + b"\r\n")
        assert reply.code == 504
        assert (await client.command(b"AUTH SCRAM-SHA-1\r\n")).code == 504
        await client.aclose()


def test_unknown_mechanism_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="SCRAM-SHA-512"):
        SmtpServer(credentials=CREDENTIALS, auth_mechanisms=["SCRAM-SHA-512"])


# -- SCRAM-SHA-1 ----------------------------------------------------------------------------


async def test_scram_sha_1_with_scramp_as_the_client() -> None:
    async with SmtpServer(
        tls="none", credentials={"alice": "s3cret"}, auth_mechanisms=ALL_MECHANISMS
    ) as server:
        client = await _session(server)
        scram = ScramClient(["SCRAM-SHA-1"], "alice", "s3cret")
        first = _b64(scram.get_client_first().encode())
        reply = await client.command(b"AUTH SCRAM-SHA-1 " + first + b"\r\n")
        assert reply.code == 334
        scram.set_server_first(base64.b64decode(reply.text).decode())
        reply = await client.command(_b64(scram.get_client_final().encode()) + b"\r\n")
        assert reply.code == 334
        scram.set_server_final(base64.b64decode(reply.text).decode())  # verifies the server
        assert (await client.command(b"\r\n")).code == 235
        assert (await send_mail(client)).code == 250
        await client.aclose()
    assert server.connections[0].auth_identity == "alice"
    assert server.connections[0].auth_mechanism == "SCRAM-SHA-1"


async def test_scram_sha_256_proof_under_the_sha_1_name_fails() -> None:
    # The mechanism really is SHA-1: a SHA-256 client's proof does not pass for it.
    async with SmtpServer(
        tls="none", credentials={"alice": "s3cret"}, auth_mechanisms=ALL_MECHANISMS
    ) as server:
        client = await _session(server)
        scram = ScramClient(["SCRAM-SHA-256"], "alice", "s3cret")
        first = _b64(scram.get_client_first().encode())
        reply = await client.command(b"AUTH SCRAM-SHA-1 " + first + b"\r\n")
        scram.set_server_first(base64.b64decode(reply.text).decode())
        reply = await client.command(_b64(scram.get_client_final().encode()) + b"\r\n")
        assert reply.code == 535
        await client.aclose()
    assert server.connections[0].auth_identity is None


# -- OAUTHBEARER on the wire ----------------------------------------------------------------


async def test_oauthbearer_failure_exchange_on_the_wire() -> None:
    server = SmtpServer(
        tls="none", hostname="mx.test", credentials=CREDENTIALS, auth_mechanisms=ALL_MECHANISMS
    )
    async with server:
        client = await _session(server)
        before = len(client.received)
        await client.command(b"AUTH OAUTHBEARER " + _b64(_bearer("wrong")) + b"\r\n")
        challenge = bytes(client.received[before:])
        # RFC 7628 §3.2.2: one 334 line whose payload is base64 JSON, no other text.
        assert challenge.startswith(b"334 ") and challenge.endswith(b"\r\n")
        payload = challenge[4:-2]
        assert b" " not in payload and b"\r\n" not in payload
        error = json.loads(base64.b64decode(payload, validate=True))
        assert error == {
            "status": "invalid_token",
            "scope": "https://mail.example/",
            "openid-configuration": "https://mx.test/.well-known/openid-configuration",
        }
        # §3.2.3: the client's dummy response is a single kvsep (%x01), "AQ==" in base64.
        before = len(client.received)
        await client.command(b"AQ==\r\n")
        assert bytes(client.received[before:]) == b"535 5.7.8 Error: authentication failed\r\n"
        # Failed, not wedged: the session goes on, still unauthenticated.
        assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 250
        await client.aclose()
    conn = server.connections[0]
    assert conn.auth_identity is None
    assert [c.argument for c in conn.commands if c.verb == ""] == ["AQ=="]


async def test_oauthbearer_success_on_the_wire() -> None:
    async with SmtpServer(
        tls="none", credentials=CREDENTIALS, auth_mechanisms=ALL_MECHANISMS
    ) as server:
        client = await _session(server)
        reply = await client.command(b"AUTH OAUTHBEARER " + _b64(_bearer()) + b"\r\n")
        assert (reply.code, reply.text) == (235, "2.7.0 Authentication successful")
        assert (await send_mail(client)).code == 250
        await client.aclose()
    assert server.connections[0].auth_identity == "alice@example.org"
    assert server.connections[0].auth_mechanism == "OAUTHBEARER"


async def test_oauthbearer_without_initial_response_gets_an_empty_challenge() -> None:
    async with SmtpServer(
        tls="none", credentials=CREDENTIALS, auth_mechanisms=ALL_MECHANISMS
    ) as server:
        client = await _session(server)
        before = len(client.received)
        assert (await client.command(b"AUTH OAUTHBEARER\r\n")).code == 334
        assert bytes(client.received[before:]) == b"334 \r\n"  # RFC 4954 §4
        assert (await client.command(_b64(_bearer()) + b"\r\n")).code == 235
        await client.aclose()
    assert server.connections[0].auth_identity == "alice@example.org"


async def test_oauthbearer_without_authzid_the_token_names_the_user() -> None:
    credentials = {"alice@example.org": TOKEN, "bob@example.org": "bob-token"}
    async with SmtpServer(
        tls="none", credentials=credentials, auth_mechanisms=ALL_MECHANISMS
    ) as server:
        client = await _session(server)
        message = _bearer("bob-token", header="n,,")
        assert (await client.command(b"AUTH OAUTHBEARER " + _b64(message) + b"\r\n")).code == 235
        await client.aclose()
    assert server.connections[0].auth_identity == "bob@example.org"


async def test_oauthbearer_malformed_message_gets_invalid_request_then_535() -> None:
    async with SmtpServer(
        tls="none", credentials=CREDENTIALS, auth_mechanisms=ALL_MECHANISMS
    ) as server:
        client = await _session(server)
        # RFC 7628 §3.1: OAUTHBEARER has no channel binding.
        message = _bearer(header="p=tls-unique,a=alice@example.org,")
        reply = await client.command(b"AUTH OAUTHBEARER " + _b64(message) + b"\r\n")
        assert reply.code == 334
        assert json.loads(base64.b64decode(reply.text))["status"] == "invalid_request"
        assert (await client.command(b"AQ==\r\n")).code == 535
        await client.aclose()
    assert server.connections[0].auth_identity is None


async def test_oauthbearer_error_answered_otherwise_still_fails() -> None:
    async with SmtpServer(
        tls="none", credentials=CREDENTIALS, auth_mechanisms=ALL_MECHANISMS
    ) as server:
        client = await _session(server)
        reply = await client.command(b"AUTH OAUTHBEARER " + _b64(_bearer("wrong")) + b"\r\n")
        assert reply.code == 334
        # Not the kvsep, but the right token: too late, the exchange has failed.
        assert (await client.command(_b64(_bearer()) + b"\r\n")).code == 535
        reply = await client.command(b"AUTH OAUTHBEARER " + _b64(_bearer("wrong")) + b"\r\n")
        assert (await client.command(b"*\r\n")).code == 501  # RFC 4954 §4: cancelled
        await client.aclose()
    assert server.connections[0].auth_identity is None


# -- the OAUTHBEARER grammar (RFC 7628 §3.1) ------------------------------------------------


def test_parse_full_request() -> None:
    request = parse_request(
        b"n,a=u=2Cv=3Dw,\x01host=mx.test\x01port=587\x01auth=Bearer t0k\x01\x01"
    )
    assert request == BearerRequest(authzid="u,v=w", token="t0k", host="mx.test", port=587)


def test_parse_minimal_request() -> None:
    # "y" (client supports channel binding, server does not advertise it) is allowed too.
    request = parse_request(b"y,,\x01auth=bearer  t0k\x01\x01")
    assert request == BearerRequest(authzid=None, token="t0k", host=None, port=None)


@pytest.mark.parametrize(
    "message",
    [
        b"\x01",  # the error acknowledgement is not a request
        b"n,a=u,auth=Bearer t\x01\x01",  # no kvsep after the GS2 header
        b"n,a=u\x01auth=Bearer t\x01\x01",  # GS2 header without its final comma
        b"p=tls-unique,a=u,\x01auth=Bearer t\x01\x01",  # channel binding
        b"n,u,\x01auth=Bearer t\x01\x01",  # authzid without "a="
        b"n,a=u=2Xv,\x01auth=Bearer t\x01\x01",  # bad saslname escape
        b"n,a=u,\x01auth=Bearer t\x01",  # no final kvsep
        b"n,a=u,\x01host=h\x01auth=Bearer t",  # last pair without kvsep
        b"n,a=u,\x01\x01",  # no auth at all
        b"n,a=u,\x01auth=Basic dTpw\x01\x01",  # not a bearer token
        b"n,a=u,\x01auth=Bearer \x01\x01",  # empty token
        b"n,a=u,\x01auth=Bearer t\x01auth=Bearer s\x01\x01",  # repeated key
        b"n,a=u,\x01ho-st=h\x01auth=Bearer t\x01\x01",  # key not ALPHA
        b"n,a=u,\x01host=h\x00\x01auth=Bearer t\x01\x01",  # NUL in a value
        b"n,a=u,\x01port=25x\x01auth=Bearer t\x01\x01",  # port not a number
        b"n,a=\xff,\x01auth=Bearer t\x01\x01",  # not UTF-8
    ],
)
def test_parse_refuses_malformed(message: bytes) -> None:
    with pytest.raises(MalformedRequest):
        parse_request(message)


def test_documented_mechanism_lists_match_the_code() -> None:
    # docs/testing.rst spells both tuples out; keep them from drifting apart.
    docs = (Path(__file__).parents[2] / "docs" / "testing.rst").read_text(encoding="utf-8")
    values = re.findall(r"py:data:: trio_smtp\.testing\.(\w+)\n\s+:value: (.+)", docs)
    assert dict(values) == {
        "ALL_MECHANISMS": repr(ALL_MECHANISMS).replace("'", '"'),
        "DEFAULT_MECHANISMS": repr(DEFAULT_MECHANISMS).replace("'", '"'),
    }


# -- LOGIN prompts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompts", "expected"),
    [
        (None, (b"Username:", b"Password:")),  # the draft's examples, by default
        ((b"User Name\0", b"Password\0"), (b"User Name\0", b"Password\0")),  # aiosmtpd's
        ((b"username", b"password"), (b"username", b"password")),
    ],
)
async def test_login_prompts_are_sent_as_configured(
    prompts: tuple[bytes, bytes] | None, expected: tuple[bytes, bytes]
) -> None:
    options = {} if prompts is None else {"login_prompts": prompts}
    server = SmtpServer(tls="none", credentials={"alice": "s3cret"}, **options)  # type: ignore[arg-type]
    async with server:
        client = await _session(server)
        first = await client.command(b"AUTH LOGIN\r\n")
        second = await client.command(_b64(b"alice") + b"\r\n")
        final = await client.command(_b64(b"s3cret") + b"\r\n")
        await client.aclose()
    assert (first.code, second.code, final.code) == (334, 334, 235)
    assert (base64.b64decode(first.text), base64.b64decode(second.text)) == expected


@pytest.mark.parametrize("prompts", [(b"Username:",), ("Username:", "Password:")])
def test_login_prompts_must_be_two_bytes_prompts(prompts: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match="login_prompts"):
        SmtpServer(credentials=CREDENTIALS, login_prompts=prompts)  # type: ignore[arg-type]
