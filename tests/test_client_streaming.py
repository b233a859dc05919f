"""Bodies from binary files, paths and async iterables, streamed to real servers."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio
from helpers.daemons import free_port

from trio_smtp import Security, SmtpClient, SmtpError
from trio_smtp.protocol import normalize_line_endings
from trio_smtp.testing import SmtpServer

ClientFactory = Callable[..., SmtpClient]
FROM = "from@example.org"
TO = ["to@example.net"]
# LF line ends, lines starting with ".", 8-bit text: all must arrive intact.
BODY = (
    b"Subject: streamed\n\n"
    + b"".join(b".line %d \xc3\xa9\n" % i for i in range(40_000))
    + b"no final newline"
)


def client_for(server: SmtpServer) -> SmtpClient:
    return SmtpClient(server.host, server.port, security=Security.NONE)


@pytest.fixture(params=[(), ("CHUNKING",)], ids=["bdat", "data"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[SmtpServer]:
    """A plaintext testing server, with CHUNKING (BDAT) and without (DATA)."""
    async with SmtpServer(tls="none", disable=request.param) as srv:
        yield srv


@pytest.fixture
def body_file(tmp_path: Path) -> Path:
    path = tmp_path / "message.eml"
    path.write_bytes(BODY)
    return path


async def test_binary_file_object_is_streamed_with_its_size(
    server: SmtpServer, body_file: Path
) -> None:
    async with client_for(server) as client:
        with body_file.open("rb") as file:
            result = await client.send(file, sender=FROM, recipients=TO)
    assert result.accepted == ("to@example.net",)
    message = server.messages[0]
    assert message.data == normalize_line_endings(BODY)
    assert message.mail_params["SIZE"] == str(len(BODY))  # RFC 1870: the file's size
    assert message.mail_params["BODY"] == "8BITMIME"  # kind unknown before reading: declared
    assert message.transfer == ("DATA" if "CHUNKING" in server.config.disabled else "BDAT")


async def test_file_is_read_from_its_current_position(server: SmtpServer, body_file: Path) -> None:
    async with client_for(server) as client:
        with body_file.open("rb") as file:
            file.seek(len("Subject: streamed\n\n"))
            await client.send(file, sender=FROM, recipients=TO)
    rest = BODY[len("Subject: streamed\n\n") :]
    assert server.messages[0].data == normalize_line_endings(rest)
    assert server.messages[0].mail_params["SIZE"] == str(len(rest))


async def test_path_is_opened_and_closed(server: SmtpServer, body_file: Path) -> None:
    async with client_for(server) as client:
        await client.send(body_file, sender=FROM, recipients=TO)
    assert server.messages[0].data == normalize_line_endings(BODY)
    os.remove(body_file)  # closed (would fail on Windows if still open)


async def test_trio_async_file(server: SmtpServer, body_file: Path) -> None:
    async with client_for(server) as client, await trio.open_file(body_file, "rb") as file:
        await client.send(file, sender=FROM, recipients=TO)
    assert server.messages[0].data == normalize_line_endings(BODY)
    assert server.messages[0].mail_params["SIZE"] == str(len(BODY))


async def test_async_iterable_of_bytes_has_no_size(server: SmtpServer) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        view = memoryview(BODY)
        for start in range(0, len(BODY), 777):  # odd splits: CRLF and "." across chunks
            yield bytes(view[start : start + 777])

    async with client_for(server) as client:
        await client.send(pieces(), sender=FROM, recipients=TO)
    message = server.messages[0]
    assert message.data == normalize_line_endings(BODY)
    assert "SIZE" not in message.mail_params


async def test_in_memory_file_object(server: SmtpServer) -> None:
    async with client_for(server) as client:
        await client.send(io.BytesIO(b"Subject: x\r\n\r\nhi\r\n"), sender=FROM, recipients=TO)
    assert server.messages[0].data == b"Subject: x\r\n\r\nhi\r\n"
    assert "SIZE" not in server.messages[0].mail_params  # not a regular file: unknown


async def test_send_async_with_a_file(server: SmtpServer, body_file: Path) -> None:
    async with client_for(server) as client:
        with body_file.open("rb") as file:
            client.send_async(file, "tok", sender=FROM, recipients=TO)
            event = await client.completed.receive()  # the file stays open until here
    assert event.user_token == "tok" and event.error is None
    assert server.messages[0].data == normalize_line_endings(BODY)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("Subject: x\r\n\r\nbody", TypeError),  # a str is neither a message nor a path
        (io.StringIO("text"), TypeError),  # text mode
        (12, TypeError),
    ],
)
async def test_bad_sources_refused_before_connecting(
    server: SmtpServer, message: object, error: type[Exception]
) -> None:
    async with client_for(server) as client:
        with pytest.raises(error):
            await client.send(message, sender=FROM, recipients=TO)  # type: ignore[arg-type]
        with pytest.raises(error):
            client.send_async(message, sender=FROM, recipients=TO)  # type: ignore[arg-type]
    assert server.connections == []


async def test_streamed_body_needs_an_envelope(server: SmtpServer, body_file: Path) -> None:
    async with client_for(server) as client:
        with pytest.raises(ValueError, match="sender="):
            await client.send(body_file, recipients=["to@example.net"])
        with pytest.raises(ValueError, match="recipients="):
            await client.send(body_file, sender="from@example.org")
    assert server.connections == []


async def test_missing_file_fails_before_mail(server: SmtpServer, tmp_path: Path) -> None:
    async with client_for(server) as client:
        with pytest.raises(FileNotFoundError):
            await client.send(tmp_path / "nope.eml", sender=FROM, recipients=TO)
        await client.send(b"Subject: x\r\n\r\nfine\r\n", sender=FROM, recipients=TO)
    assert "MAIL" in server.connections[0].verbs
    assert [m.data for m in server.messages] == [b"Subject: x\r\n\r\nfine\r\n"]


class _FailingFile(io.RawIOBase):
    """Gives two chunks, then fails as a broken disk would."""

    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 2:
            raise OSError("disk on fire")
        return b"x" * 100 + b"\r\n"


async def test_read_error_aborts_without_delivering(server: SmtpServer) -> None:
    async with client_for(server) as client:
        with pytest.raises(OSError, match="disk on fire"):
            await client.send(_FailingFile(), sender=FROM, recipients=TO)
        await client.send(b"Subject: x\r\n\r\nnext\r\n", sender=FROM, recipients=TO)
    # Nothing of the failed message was delivered; the next send used a new connection.
    assert [m.data for m in server.messages if m.accepted] == [b"Subject: x\r\n\r\nnext\r\n"]
    assert len(server.connections) == 2


async def test_nul_in_a_stream_is_refused_and_not_delivered(server: SmtpServer) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        yield b"Subject: x\r\n\r\n" + b"a" * 300_000
        yield b"b\0c\r\n"

    async with client_for(server) as client:
        with pytest.raises(SmtpError, match="NUL"):
            await client.send(pieces(), sender=FROM, recipients=TO)
    assert not any(m.accepted for m in server.messages)


# -- bounded memory: a separate process, so its peak RSS is its own -------------------------

_RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys, pathlib, trio
    from trio_smtp import Security, SmtpClient

    async def main(port, path):
        async with SmtpClient("127.0.0.1", port, security=Security.NONE,
                              local_hostname="rss.test") as client:
            await client.send(b"Subject: warm-up\\r\\n\\r\\nx\\r\\n",
                              sender="a@example.org", recipients=["b@example.net"])
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            with open(path, "rb") as file:
                await client.send(file, sender="a@example.org", recipients=["b@example.net"])
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(after - before)

    trio.run(main, int(sys.argv[1]), sys.argv[2])
    """
)


@pytest.fixture
def smtp_sink() -> Iterator[int]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.path.exists(sink):
        pytest.skip("Postfix's smtp-sink is not installed")
    port = free_port()
    command = [sink, *(["-u", "nobody"] if os.geteuid() == 0 else []), f"127.0.0.1:{port}", "10"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)  # a sync fixture: smtp-sink takes a moment to listen
        yield port
    finally:
        proc.kill()
        proc.wait()


def test_large_file_streams_in_bounded_memory(smtp_sink: int, tmp_path: Path) -> None:
    path = tmp_path / "big.eml"
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\n"  # LF only: encoded on the way
    with path.open("wb") as file:
        file.write(b"Subject: big\n\n")
        for _ in range(80 * 1024 * 1024 // (1024 * 1024)):
            file.write(line * (1024 * 1024 // len(line)))
    done = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(smtp_sink), str(path)],
        capture_output=True,
        timeout=120,
        check=True,
    )
    growth_kib = int(done.stdout.decode().split()[-1])
    assert growth_kib < 32 * 1024, f"peak RSS grew by {growth_kib} KiB for an 80 MB file"
