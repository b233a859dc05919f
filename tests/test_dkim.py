"""DKIM signing: every signed message is verified as the testing server received it, with
dkimpy's verifier (the public key given through ``dnsfunc``, no DNS) and, for one transfer
of each key kind, with OpenDKIM (``opendkim -t``, an independent implementation in C, the
key served by a DNS server in a private network namespace); one changed body octet fails
both.  The DNS record the signer publishes is checked with opendkim-testkey."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from helpers.messages import build_message

from trio_smtp import DkimSigner, OutgoingMessage, SmtpClient, SmtpPool
from trio_smtp.testing import SmtpServer

dkim = pytest.importorskip("dkim", reason="the dkim extra (dkimpy) is not installed")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
asymmetric = pytest.importorskip("cryptography.hazmat.primitives.asymmetric")

DOMAIN, SELECTOR = "example.org", "mail2026"


def _rsa_pem(pkcs1: bool = False) -> bytes:
    key = asymmetric.rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if pkcs1
        else serialization.PrivateFormat.PKCS8
    )
    return bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))


def _ed25519_pem() -> bytes:
    key = asymmetric.ed25519.Ed25519PrivateKey.generate()
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def rsa_key() -> bytes:
    return _rsa_pem()


@pytest.fixture(scope="module")
def ed25519_key() -> bytes:
    return _ed25519_pem()


def verifies(data: bytes, signer: DkimSigner) -> bool:
    """dkimpy's verdict on ``data`` (as received), the key coming from the signer's own
    DNS record: the record is checked too."""
    name, value = signer.dns_record()

    def dnsfunc(query: bytes, timeout: float = 5) -> bytes:
        assert query.decode().rstrip(".") == name
        return value.encode()

    return bool(dkim.verify(data, dnsfunc=dnsfunc))


def tampered(data: bytes) -> bytes:
    """``data`` with one octet of the body changed."""
    body = data.index(b"\r\n\r\n") + 4
    index = data.index(b"o", body)
    return data[:index] + b"0" + data[index + 1 :]


# -- OpenDKIM, an independent implementation ------------------------------------------------

OPENDKIM = "/usr/sbin/opendkim"
TESTKEY = "/usr/sbin/opendkim-testkey"
HELPER = Path(__file__).with_name("opendkim_check.py")


def _opendkim(tool: str, *args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run tests/opendkim_check.py in fresh network and mount namespaces (see there)."""
    program, package = (OPENDKIM, "opendkim") if tool == "verify" else (TESTKEY, "opendkim-tools")
    if not os.access(program, os.X_OK):
        pytest.skip(f"{program} is not installed (Debian {package}; .ci/run installs it)")
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip(
            "OpenDKIM reads keys from DNS only: serving one locally needs root, unshare and ip "
            "(a private network namespace with its own resolver)"
        )
    argv = ["unshare", "--net", "--mount", sys.executable, str(HELPER), tool, *args]
    return subprocess.run(argv, input=data, capture_output=True, timeout=120, check=False)


def opendkim_verdict(data: bytes, signer: DkimSigner) -> str:
    """OpenDKIM's result for ``data`` ("pass", "fail", ...), from its filter's test mode
    (``opendkim -t``), the key served from the signer's DNS record."""
    done = _opendkim("verify", *signer.dns_record(), data=data)
    found = re.search(rb"dkim=(\w+)", done.stdout)
    assert found is not None, (done.stdout + done.stderr).decode(errors="replace")
    return found.group(1).decode()


def _client(server: SmtpServer, **kwargs: object) -> SmtpClient:
    return SmtpClient(server.host, server.port, ssl_context=server.ssl_context, **kwargs)  # type: ignore[arg-type]


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("transfer", ["DATA", "BDAT"])
@pytest.mark.parametrize("kind", ["rsa", "rsa-pkcs1", "ed25519-pem", "ed25519-seed"])
async def test_signed_email_message_verifies_as_received(
    rsa_key: bytes, ed25519_key: bytes, kind: str, transfer: str
) -> None:
    key = {
        "rsa": rsa_key,
        "rsa-pkcs1": _rsa_pem(pkcs1=True) if kind == "rsa-pkcs1" else b"",
        "ed25519-pem": ed25519_key,
        "ed25519-seed": base64.b64encode(os.urandom(32)),
    }[kind]
    signer = DkimSigner(DOMAIN, SELECTOR, key)
    assert signer.algorithm == ("rsa-sha256" if kind.startswith("rsa") else "ed25519-sha256")
    message = build_message(Bcc="hidden@example.net", body="Hi.\n.leading dot\n")
    disable = {"CHUNKING"} if transfer == "DATA" else set()
    async with SmtpServer(disable=disable) as server:
        async with _client(server, dkim=signer) as client:
            await client.send(message)
        received = await server.wait_for_message()
    assert received.transfer == transfer
    assert received.data.startswith(b"DKIM-Signature: v=1; a=" + signer.algorithm.encode())
    assert b"hidden@example.net" not in received.data  # Bcc removed before signing
    assert received.recipients[-1] == "hidden@example.net"
    assert verifies(received.data, signer)
    assert not verifies(tampered(received.data), signer)
    assert "Bcc" in message  # the caller's message is left as it was
    if transfer == "DATA":  # the same octets either way: OpenDKIM once per key kind
        assert opendkim_verdict(received.data, signer) == "pass"
        assert opendkim_verdict(tampered(received.data), signer) == "fail"


async def test_bytes_with_bare_line_feeds_are_signed_as_sent(rsa_key: bytes) -> None:
    # The wire gets CRLF (RFC 5321 §2.3.8): the signature must cover that, not the input.
    raw = b"From: a@example.org\nTo: b@example.net\nSubject: lf\n\nline one\r\nline two\n"
    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key, canonicalization=("simple", "simple"))
    async with SmtpServer() as server:
        async with _client(server, dkim=signer) as client:
            await client.send(raw, sender="a@example.org", recipients=["b@example.net"])
        received = await server.wait_for_message()
    assert b"\nline two\r\n" in received.data
    assert verifies(received.data, signer)
    assert not verifies(tampered(received.data), signer)
    assert opendkim_verdict(received.data, signer) == "pass"
    assert opendkim_verdict(tampered(received.data), signer) == "fail"


async def test_per_message_signers_override_the_clients(rsa_key: bytes, ed25519_key: bytes) -> None:
    default = DkimSigner(DOMAIN, SELECTOR, rsa_key)
    other = DkimSigner("example.net", "ed", ed25519_key, headers=["From", "Subject"])
    async with SmtpServer() as server:
        async with _client(server, dkim=default) as client:
            await client.send(build_message(), dkim=other)
            await client.send(build_message(), dkim=False)
            client.send_async(build_message(), "token")
            event = await client.completed.receive()
            assert event.error is None
        messages = server.messages
    assert b"d=example.net" in messages[0].data
    assert b"h=from : subject" in messages[0].data
    assert verifies(messages[0].data, other)
    assert not messages[1].data.startswith(b"DKIM-Signature")
    assert verifies(messages[2].data, default)


async def test_send_many_signs_each_message(rsa_key: bytes, ed25519_key: bytes) -> None:
    default = DkimSigner(DOMAIN, SELECTOR, rsa_key)
    other = DkimSigner(DOMAIN, "ed", ed25519_key)
    raw = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: raw\r\n\r\nraw body\r\n"
    items: list[EmailMessage | bytes | OutgoingMessage] = [
        build_message(),
        OutgoingMessage(raw, sender="a@example.org", recipients=["b@example.net"], dkim=other),
        OutgoingMessage(build_message(), dkim=False),
    ]
    async with SmtpServer() as server:
        async with _client(server, dkim=default) as client:
            outcomes = await client.send_many(items)
        assert all(not isinstance(outcome, Exception) for outcome in outcomes)
        data = [message.data for message in server.messages]
    assert verifies(data[0], default)
    assert verifies(data[1], other)
    assert not data[2].startswith(b"DKIM-Signature")


async def test_a_pool_signs_as_the_client_does(rsa_key: bytes, ed25519_key: bytes) -> None:
    # SmtpPool(dkim=) and send(dkim=) mean what they mean on SmtpClient, on every path.
    default = DkimSigner(DOMAIN, SELECTOR, rsa_key)
    other = DkimSigner(DOMAIN, "ed", ed25519_key)
    async with SmtpServer() as server:
        pool = SmtpPool(server.host, server.port, ssl_context=server.ssl_context, dkim=default)
        async with pool:
            await pool.send(build_message(Subject_Line="send"))
            await pool.send(build_message(Subject_Line="other"), dkim=other)
            await pool.send(build_message(Subject_Line="unsigned"), dkim=False)
            pool.send_async(build_message(Subject_Line="async"), "token")
            outcomes = await pool.send_many(
                [
                    build_message(Subject_Line="many"),
                    OutgoingMessage(build_message(Subject_Line="many other"), dkim=other),
                ]
            )
            event = await pool.completed.receive()
        assert event.error is None
        assert all(not isinstance(outcome, Exception) for outcome in outcomes)
        data = {
            m.data.split(b"Subject-Line: ")[1].split(b"\r\n")[0]: m.data for m in server.messages
        }
    assert verifies(data[b"send"], default)
    assert verifies(data[b"other"], other)
    assert not data[b"unsigned"].startswith(b"DKIM-Signature")
    assert verifies(data[b"async"], default)
    assert verifies(data[b"many"], default)
    assert verifies(data[b"many other"], other)
    assert not verifies(tampered(data[b"send"]), default)


async def test_streamed_body_is_refused_before_anything_is_written(
    rsa_key: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "big.eml"
    path.write_bytes(b"From: a@example.org\r\nTo: b@example.net\r\n\r\nbig\r\n")

    async def chunks() -> AsyncIterator[bytes]:
        yield path.read_bytes()

    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key)
    envelope = {"sender": "a@example.org", "recipients": ["b@example.net"]}
    async with SmtpServer() as server:
        async with _client(server, dkim=signer) as client:
            for body in (path, chunks()):
                with pytest.raises(ValueError, match="in memory"):
                    await client.send(body, **envelope)  # type: ignore[arg-type]
            assert not server.connections  # refused before connecting
            await client.send(path, dkim=False, **envelope)  # type: ignore[arg-type]
        assert not server.messages[0].data.startswith(b"DKIM-Signature")


async def test_pickup_directory_gets_the_signed_message(rsa_key: bytes, tmp_path: Path) -> None:
    from trio_smtp import DeliveryMethod

    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key)
    client = SmtpClient(
        delivery_method=DeliveryMethod.PICKUP_DIRECTORY, pickup_directory=tmp_path, dkim=signer
    )
    async with client:
        await client.send(build_message())
    data = _only_file(tmp_path)
    assert verifies(data[data.index(b"DKIM-Signature") :], signer)


def _only_file(directory: Path) -> bytes:
    (written,) = directory.glob("*.eml")
    return written.read_bytes()


# -- the signer -------------------------------------------------------------------------------


def test_binary_body_with_bare_line_ends_is_refused(rsa_key: bytes) -> None:
    from trio_smtp._message.dkim import sign_prepared
    from trio_smtp._message.prepare import prepare_message

    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key)
    head = b"From: a@example.org\r\nTo: b@example.net\r\n\r\n"
    envelope = ("a@example.org", ["b@example.net"])
    with pytest.raises(ValueError, match="binary body"):
        sign_prepared(prepare_message(head + b"\x00\x01\n\x02", *envelope), signer)
    # CRLF-clean binary content is left as it is, and signed.
    signed = sign_prepared(prepare_message(head + b"\x00\x01\r\n", *envelope), signer)
    assert signed.data.endswith(head + b"\x00\x01\r\n")
    assert verifies(signed.data, signer)


def test_sign_accepts_lf_line_ends_and_needs_from(rsa_key: bytes) -> None:
    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key)
    assert signer.sign(b"To: b@example.net\nFrom: a@example.org\n\nbody\n").startswith(
        b"DKIM-Signature:"
    )
    with pytest.raises(ValueError, match="without a From field"):
        signer.sign(b"To: b@example.net\n\nFrom: in the body\n")


def test_repr_hides_the_key(rsa_key: bytes) -> None:
    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key.decode())
    assert repr(signer) == (
        "DkimSigner(domain='example.org', selector='mail2026', algorithm='rsa-sha256', "
        "private_key=<hidden>)"
    )


def test_dns_record_is_the_public_key(rsa_key: bytes, ed25519_key: bytes) -> None:
    rsa = DkimSigner(DOMAIN, SELECTOR, rsa_key)
    public = serialization.load_pem_private_key(rsa_key, None).public_key()
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert rsa.dns_record() == (
        "mail2026._domainkey.example.org",
        f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}",
    )
    ed = DkimSigner(DOMAIN, "ed", ed25519_key)
    raw = (
        serialization.load_pem_private_key(ed25519_key, None)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert ed.dns_record()[1] == f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"private_key": "not a key"}, "expected a PEM private key"),
        (
            {"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"},
            "cannot sign",
        ),
        ({"headers": ["Subject"]}, "must include From"),
        ({"headers": ["From", "Bcc"]}, "must not be signed: bcc"),
        ({"headers": ["From", "Bad Name"]}, "invalid header field name"),
        ({"domain": "exa mple.org"}, "invalid DKIM domain"),
        ({"selector": ""}, "invalid DKIM selector"),
        ({"canonicalization": ("relaxed", "loose")}, "canonicalization"),
    ],
)
def test_invalid_signers(rsa_key: bytes, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "domain": DOMAIN,
        "selector": SELECTOR,
        "private_key": rsa_key,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        DkimSigner(**arguments)  # type: ignore[arg-type]


def test_missing_extra_is_an_import_error_naming_it(
    rsa_key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dkim", None)
    with pytest.raises(ImportError, match=r"trio-smtp\[dkim\]"):
        DkimSigner(DOMAIN, SELECTOR, rsa_key)


async def test_message_without_from_is_refused_before_anything_is_written(
    rsa_key: bytes,
) -> None:
    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key, headers=["From", "Subject"])
    raw = b"Subject: no from\r\n\r\nbody\r\n"
    async with SmtpServer() as server:
        async with _client(server, dkim=signer) as client:
            with pytest.raises(ValueError, match="without a From field"):
                await client.send(raw, sender="a@example.org", recipients=["b@example.net"])
        assert not server.connections


def test_dkim_argument_is_type_checked(rsa_key: bytes) -> None:
    with pytest.raises(TypeError, match="DkimSigner"):
        SmtpClient("mail.example.org", dkim="yes")  # type: ignore[arg-type]


# -- OpenDKIM's key check -------------------------------------------------------------------


def test_opendkim_testkey_accepts_the_dns_record(rsa_key: bytes, tmp_path: Path) -> None:
    # opendkim-testkey 2.11 checks RSA keys only (Ed25519: "expecting an rsa key").
    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key)
    keyfile = tmp_path / "key.pem"
    keyfile.write_bytes(rsa_key)
    keyfile.chmod(0o600)
    done = _opendkim("testkey", *signer.dns_record(), DOMAIN, SELECTOR, str(keyfile))
    assert done.returncode == 0, done.stderr.decode()
    assert b"key OK" in done.stdout
    # Another key's record does not match this private key.
    wrong = DkimSigner(DOMAIN, SELECTOR, _rsa_pem()).dns_record()
    done = _opendkim("testkey", *wrong, DOMAIN, SELECTOR, str(keyfile))
    assert done.returncode != 0
