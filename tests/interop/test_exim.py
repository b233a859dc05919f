"""The client, send_many's window and the pool against Exim: a real server with CHUNKING.

The testing server is the project's own, and aiosmtpd and smtp-sink offer no CHUNKING
(RFC 3030), so without this module the pipelined ``BDAT n LAST`` groups of
:meth:`~trio_smtp.SmtpClient.send_many`'s window (several transactions in flight on one
connection) would only ever meet a server written by the same hands as the client.  Exim
offers PIPELINING and CHUNKING by default and enforces RFC 2920's synchronisation rules
(a client that writes where it must wait is dropped with "554 SMTP synchronization error"),
so these tests also check that every group the client pipelines is one RFC 2920 allows.

Exim conflicts with Postfix as a Debian package, so ``.ci/run`` unpacks ``exim4-daemon-light``
with ``dpkg -x`` into ``/opt/exim4`` (and creates the ``Debian-exim`` user its binary is
built for); ``$TRIO_SMTP_EXIM`` or an ``exim4``/``exim`` on ``PATH`` are used too.  Each test
starts its own Exim daemon on 127.0.0.1 with a configuration written here: queue only (no
delivery: each accepted message stays in the spool, where the test reads it), a sender and
recipients refused or deferred by their local parts, STARTTLS with a trustme certificate and
AUTH PLAIN/LOGIN over TLS.
"""

from __future__ import annotations

import os
import shutil
import ssl
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from helpers.daemons import free_port, wait_listening

from trio_smtp import (
    OutgoingMessage,
    Security,
    SendResult,
    SmtpAuthenticationError,
    SmtpClient,
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpFailedRecipientsError,
    SmtpPool,
    SmtpResponseError,
)


def _find_exim() -> str | None:
    for candidate in (
        os.environ.get("TRIO_SMTP_EXIM", ""),
        "/opt/exim4/usr/sbin/exim4",
        shutil.which("exim4") or "",
        shutil.which("exim") or "",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


EXIM = _find_exim()
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        EXIM is None,
        reason="Exim not found (.ci/run unpacks exim4-daemon-light into /opt/exim4; "
        "or set TRIO_SMTP_EXIM)",
    ),
    pytest.mark.skipif(
        os.geteuid() != 0, reason="Exim's daemon (-bd) refuses to start for a user other than root"
    ),
]

USER, PASSWORD = "exim-user", "exim-secret"
SENDER = "sender@example.org"

_CONFIG = """\
primary_hostname = exim.test
spool_directory = @ROOT@/spool
log_file_path = @ROOT@/log/%slog
local_interfaces = 127.0.0.1
queue_only = true
host_lookup =
rfc1413_hosts =
smtp_accept_max = 50
tls_advertise_hosts = *
tls_certificate = @ROOT@/cert.pem
tls_privatekey = @ROOT@/key.pem
log_selector = +tls_resumption
tls_resumption_hosts = *
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt

begin acl
acl_mail:
  deny senders = refused@example.org
       message = sender refused here
  accept
acl_rcpt:
  deny local_parts = ^refused.*
       message = recipient refused here
  defer local_parts = ^later.*
       message = recipient deferred, try later
  drop local_parts = ^dropped.*
       message = closing the connection now
  accept

begin routers
blackhole:
  driver = redirect
  data = :blackhole:

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and {{eq{$auth2}{@USER@}}{eq{$auth3}{@PASSWORD@}}}}
  server_set_id = $auth2
  server_advertise_condition = ${if def:tls_in_cipher}
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${if and {{eq{$auth1}{@USER@}}{eq{$auth2}{@PASSWORD@}}}}
  server_set_id = $auth1
  server_advertise_condition = ${if def:tls_in_cipher}
"""


@dataclass
class Exim:
    """A running Exim daemon: where it listens and where its spool is."""

    port: int
    root: Path
    ca: trustme.CA

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def queued(self) -> list[tuple[str, list[str], bytes]]:
        """Every message in the queue: (envelope sender, recipients, header and body as
        Exim keeps them: LF line ends, each header field after Exim's length and flag)."""
        messages = []
        for header_file in sorted((self.root / "spool" / "input").glob("*-H")):
            lines = header_file.read_bytes().split(b"\n")
            sender = lines[2].decode().strip("<>")
            tree = lines.index(b"XX")  # the empty tree of recipients already delivered
            count = int(lines[tree + 1])
            recipients = [line.decode() for line in lines[tree + 2 : tree + 2 + count]]
            header = b"\n".join(lines[tree + 3 + count :])
            body = header_file.with_name(header_file.name[:-2] + "-D").read_bytes()
            messages.append((sender, recipients, header + body.partition(b"\n")[2]))
        return messages

    def received_lines(self) -> list[str]:
        """The main log's line for each message received ("<=")."""
        log = (self.root / "log" / "mainlog").read_text()
        return [line for line in log.splitlines() if " <= " in line]


@pytest.fixture
def exim_root() -> Iterator[Path]:
    # Not under pytest's tmp_path, whose parents are private to us: run by root, Exim's
    # receiving processes write the spool and logs as the Debian-exim user.
    root = Path(tempfile.mkdtemp(prefix="trio-smtp-exim-"))
    root.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    for sub in ("spool", "log"):
        (root / sub).mkdir()
        (root / sub).chmod(stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def exim(exim_root: Path) -> AsyncIterator[Exim]:
    assert EXIM is not None
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(exim_root / "cert.pem"))
    cert.private_key_pem.write_to_path(str(exim_root / "key.pem"))
    # Exim reads its certificate after dropping to its own user when it is root.
    for name in ("cert.pem", "key.pem"):
        (exim_root / name).chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    config = exim_root / "exim.conf"
    text = _CONFIG.replace("@ROOT@", str(exim_root))
    config.write_text(text.replace("@USER@", USER).replace("@PASSWORD@", PASSWORD))
    config.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)  # Exim insists
    port = free_port()
    process = await trio.lowlevel.open_process(
        [EXIM, "-C", str(config), "-bdf", "-oX", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await wait_listening(port, process, "Exim")
        yield Exim(port, exim_root, ca)
    finally:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


def _message(n: int, size: int = 300) -> bytes:
    body = (f"line {n} " * 10 + "\r\n") * (size // 80 + 1)
    return (
        f"From: {SENDER}\r\nTo: rcpt@example.net\r\nSubject: message {n}\r\n"
        f"Message-ID: <exim-{n}@example.org>\r\n\r\n.leading dot {n}\r\n{body}"
    ).encode()


def _tls_client(exim: Exim) -> SmtpClient:
    return SmtpClient("127.0.0.1", exim.port, **_tls_options(exim))


def _tls_options(exim: Exim, context: ssl.SSLContext | None = None) -> dict[str, Any]:
    """STARTTLS required, trusting the daemon's CA, and AUTH with the user it knows."""
    return {
        "security": Security.STARTTLS,
        "ssl_context": context or exim.client_context(),
        "credentials": (USER, PASSWORD),
        "local_hostname": "client.test",
    }


def _check_queue(exim: Exim, expected: dict[int, list[str]]) -> None:
    """The queue holds exactly the messages ``expected`` names, each for its recipients,
    with its data intact (the leading dot un-stuffed by Exim)."""
    queued = exim.queued()
    by_subject = {}
    for sender, recipients, data in queued:
        subject = next(line for line in data.split(b"\n") if b"Subject: message" in line)
        by_subject[int(subject.split()[-1])] = (sender, recipients, data)
    assert sorted(by_subject) == sorted(expected)
    assert len(queued) == len(expected)
    for n, recipients in expected.items():
        sender, got, data = by_subject[n]
        assert got == recipients
        assert f"\n.leading dot {n}\n".encode() in data


async def test_starttls_auth_and_send(exim: Exim) -> None:
    async with _tls_client(exim) as client:
        result = await client.send(_message(1), sender=SENDER, recipients=["rcpt@example.net"])
    assert result.accepted == ("rcpt@example.net",)
    assert result.reply is not None and result.reply.code == 250
    _check_queue(exim, {1: ["rcpt@example.net"]})


async def test_wrong_password_is_an_authentication_error(exim: Exim) -> None:
    client = SmtpClient(
        "127.0.0.1",
        exim.port,
        security=Security.STARTTLS,
        ssl_context=exim.client_context(),
        credentials=(USER, "not-the-password"),
    )
    async with client:
        with pytest.raises(SmtpAuthenticationError) as info:
            await client.send(_message(1), sender=SENDER, recipients=["rcpt@example.net"])
    assert info.value.reply is not None and info.value.reply.code == 535
    assert exim.queued() == []


async def test_refusals_in_send(exim: Exim) -> None:
    async with _tls_client(exim) as client:
        with pytest.raises(SmtpFailedRecipientsError) as some:
            await client.send(
                _message(1),
                sender=SENDER,
                recipients=["refused-a@example.net", "rcpt@example.net", "later-b@example.net"],
            )
        # Delivered to one recipient: the error carries the result, each refusal its reply.
        assert some.value.result is not None
        assert some.value.result.accepted == ("rcpt@example.net",)
        assert {f.recipient: (f.reply and f.reply.code) for f in some.value.failures} == {
            "refused-a@example.net": 550,
            "later-b@example.net": 451,
        }
        with pytest.raises(SmtpFailedRecipientsError) as every:
            await client.send(_message(2), sender=SENDER, recipients=["refused@example.net"])
        assert every.value.result is None
        with pytest.raises(SmtpResponseError) as mail:
            await client.send(
                _message(3), sender="refused@example.org", recipients=["rcpt@example.net"]
            )
        assert mail.value.reply is not None and mail.value.reply.code == 550
        # The connection is still usable after each refusal.
        await client.send(_message(4), sender=SENDER, recipients=["rcpt@example.net"])
    _check_queue(exim, {1: ["rcpt@example.net"], 4: ["rcpt@example.net"]})


def _batch(count: int, refused_at: set[int], mail_refused_at: set[int]) -> list[OutgoingMessage]:
    items = []
    for n in range(count):
        recipients = [f"refused-{n}@example.net" if n in refused_at else f"rcpt-{n}@example.net"]
        sender = "refused@example.org" if n in mail_refused_at else SENDER
        items.append(OutgoingMessage(_message(n), sender=sender, recipients=recipients))
    return items


def _expected(items: list[OutgoingMessage]) -> dict[int, list[str]]:
    return {
        n: list(item.recipients or ())
        for n, item in enumerate(items)
        if item.sender == SENDER and not str((item.recipients or ("",))[0]).startswith("refused")
    }


def _assert_outcomes(items: list[OutgoingMessage], outcomes: list[SendResult | Exception]) -> None:
    assert len(outcomes) == len(items)
    for n, (item, outcome) in enumerate(zip(items, outcomes, strict=True)):
        if item.sender != SENDER:
            assert isinstance(outcome, SmtpResponseError), (n, outcome)
            assert outcome.reply is not None and outcome.reply.code == 550
        elif str((item.recipients or ("",))[0]).startswith("refused"):
            assert isinstance(outcome, SmtpFailedRecipientsError), (n, outcome)
            assert outcome.result is None
        else:
            assert isinstance(outcome, SendResult), (n, outcome)
            assert outcome.accepted == tuple(item.recipients or ())


@pytest.mark.parametrize("position", [0, 1, 7, 15, 16, 19])
async def test_window_refusals_at_every_position_stay_exact(exim: Exim, position: int) -> None:
    # 20 messages pipelined with BDAT (windows of up to 16 in flight): one refused recipient
    # at `position`, one refused sender three further on.  Every other message is queued
    # exactly once, and each outcome names its own message's fate.
    items = _batch(20, refused_at={position}, mail_refused_at={(position + 3) % 20})
    async with _tls_client(exim) as client:
        outcomes = await client.send_many(items)
        assert client.statistics().connections_opened == 1
    _assert_outcomes(items, outcomes)
    _check_queue(exim, _expected(items))


async def test_window_across_a_dropped_connection_is_honest(exim: Exim) -> None:
    # Exim answers "421" to message 5's RCPT and closes the connection while messages up to
    # 15 are already written behind it (one window): its close, with their bytes unread,
    # resets the connection, and the kernel may drop replies the client had not read yet.
    # Each message still gets exactly one outcome and none lies: a message reported sent
    # is in the queue, a refused one is not, message 5 is never reported sent, those the
    # client cannot know about say so (SmtpDeliveryUnknownError) or were never written
    # (SmtpConnectError), and the rest go over a new connection.  Which ones the cut
    # leaves unknown depends on timing: when the client reads the 421 before the reset, it
    # knows the rest were never taken and sends them again (none is unknown); when the reset
    # came first, those written after message 4 are unknown.  Only these rules are fixed.
    items = _batch(20, refused_at=set(), mail_refused_at=set())
    items[5] = OutgoingMessage(_message(5), sender=SENDER, recipients=["dropped@example.net"])
    async with _tls_client(exim) as client:
        outcomes = await client.send_many(items)
        assert client.statistics().connections_opened == 2
    assert len(outcomes) == 20
    queued = {_number(data): recipients for _, recipients, data in exim.queued()}
    for n, outcome in enumerate(outcomes):
        if isinstance(outcome, SendResult):
            assert queued.get(n) == list(outcome.accepted), n
        elif not isinstance(outcome, SmtpDeliveryUnknownError):  # queued or not: both honest
            assert n not in queued, (n, outcome)
            assert isinstance(outcome, (SmtpResponseError, SmtpConnectError)), (n, outcome)
    assert not isinstance(outcomes[5], SendResult) and 5 not in queued
    if isinstance(outcomes[5], SmtpResponseError) and outcomes[5].reply is not None:
        assert outcomes[5].reply.code == 421
    assert isinstance(outcomes[19], SendResult)  # after the cut, over a new connection


def _number(data: bytes) -> int:
    return int(data.split(b"Subject: message ")[1].split(b"\n")[0])


async def test_window_with_large_and_small_messages(exim: Exim) -> None:
    # Messages over the window's per-message size go alone, the small ones in flight
    # together; the order of outcomes and the data of each are kept.
    items = [
        OutgoingMessage(
            _message(n, 300_000 if n % 4 == 0 else 400),
            sender=SENDER,
            recipients=[f"rcpt-{n}@example.net"],
        )
        for n in range(12)
    ]
    async with _tls_client(exim) as client:
        outcomes = await client.send_many(items)
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes
    _check_queue(exim, _expected(items))


async def test_pool_from_many_tasks(exim: Exim) -> None:
    outcomes: dict[int, SendResult | Exception] = {}
    pool = SmtpPool("127.0.0.1", exim.port, max_connections=4, **_tls_options(exim))

    async def one(n: int) -> None:
        recipient = f"refused-{n}@example.net" if n % 5 == 2 else f"rcpt-{n}@example.net"
        try:
            outcomes[n] = await pool.send(_message(n), sender=SENDER, recipients=[recipient])
        except SmtpFailedRecipientsError as error:
            outcomes[n] = error

    async with pool, trio.open_nursery() as nursery:
        for n in range(30):
            nursery.start_soon(one, n)
    assert sorted(outcomes) == list(range(30))
    expected = {}
    for n, outcome in outcomes.items():
        if n % 5 == 2:
            assert isinstance(outcome, SmtpFailedRecipientsError)
        else:
            assert isinstance(outcome, SendResult)
            expected[n] = [f"rcpt-{n}@example.net"]
    _check_queue(exim, expected)


async def test_pool_send_many_resumes_tls(exim: Exim) -> None:
    # Connections capped at 5 messages: the pool reconnects, resuming TLS with the session
    # Exim (GnuTLS) issued on an earlier connection.
    items = _batch(20, refused_at=set(), mail_refused_at=set())
    context = exim.client_context()
    pool = SmtpPool(
        "127.0.0.1",
        exim.port,
        max_connections=2,
        max_messages_per_connection=5,
        **_tls_options(exim, context),
    )
    async with pool:
        outcomes = await pool.send_many(items)
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes
    _check_queue(exim, _expected(items))
    # Four connections of five messages, the first two opened together (nothing to resume
    # yet); the later ones resumed: OpenSSL counts them, and Exim marks their cipher "*".
    assert context.session_stats()["hits"] >= 1
    resumed = [line for line in exim.received_lines() if "*" in line.split(" X=")[1].split()[0]]
    assert len(resumed) >= 5
