"""SmtpClient against Postfix's smtp-sink, using its fault flags at each phase.

smtp-sink is started per test on 127.0.0.1 with the flags under test (``-q``/``-Q``
disconnect or 421 at a command, ``-f``/``-r`` hard/soft reject, ``-W`` delay, ``-A`` abort
after DATA, ``-e``/``-p`` no ESMTP/PIPELINING) and ``-d`` to dump each transaction.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trio
from helpers.daemons import free_port, wait_listening

from trio_smtp import (
    Security,
    SmtpClient,
    SmtpDeliveryUnknownError,
    SmtpFailedRecipientsError,
    SmtpProtocolError,
    SmtpResponseError,
    SmtpTimeoutError,
    Timeouts,
)

SMTP_SINK = "/usr/sbin/smtp-sink"
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not os.path.exists(SMTP_SINK), reason="Postfix smtp-sink not installed"),
]

MakeMessage = Callable[..., EmailMessage]
StartSink = Callable[..., Awaitable[int]]


@pytest.fixture
def dump_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parents are private to us, and smtp-sink runs as
    # "nobody" when we are root.
    directory = Path(tempfile.mkdtemp(prefix="trio-smtp-sink-"))
    directory.chmod(stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def start_sink(dump_dir: Path) -> AsyncIterator[StartSink]:
    """``port = await start_sink("-Q", "MAIL")``: a fresh smtp-sink with extra flags."""
    processes: list[trio.Process] = []

    async def start(*flags: str) -> int:
        port = free_port()
        command = [SMTP_SINK, "-d", f"{dump_dir}/%M.", *flags, f"127.0.0.1:{port}", "10"]
        if os.geteuid() == 0:
            command[1:1] = ["-u", "nobody"]  # it refuses to run as root without it
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        processes.append(process)
        await wait_listening(port, process, "smtp-sink")
        return port

    try:
        yield start
    finally:
        for process in processes:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


def _client(port: int, timeouts: Timeouts | None = None) -> SmtpClient:
    return SmtpClient("127.0.0.1", port, security=Security.NONE, timeouts=timeouts)


async def _dumps(dump_dir: Path) -> list[bytes]:
    def read() -> list[bytes]:
        return [p.read_bytes() for p in sorted(dump_dir.rglob("*")) if p.is_file()]

    return await trio.to_thread.run_sync(read)


@pytest.mark.parametrize("flags", [(), ("-p",), ("-e",)], ids=["esmtp", "no-pipelining", "helo"])
async def test_delivers(
    start_sink: StartSink, dump_dir: Path, make_message: MakeMessage, flags: tuple[str, ...]
) -> None:
    port = await start_sink(*flags)
    msg = make_message("a@example.net, b@example.net", body=".dot line\nsecond\n")
    async with _client(port) as client:
        result = await client.send(msg)
        await client.send(make_message())
    assert result.accepted == ("a@example.net", "b@example.net")
    assert result.reply is not None and result.reply.code == 250
    dumps = await _dumps(dump_dir)
    assert len(dumps) == 2
    # The sink un-stuffs the dot and writes LF line ends.
    assert any(b"\n\n.dot line\nsecond\n" in dump for dump in dumps)


async def test_421_at_mail_then_reconnect(start_sink: StartSink, make_message: MakeMessage) -> None:
    port = await start_sink("-Q", "MAIL")
    async with _client(port) as client:
        for _ in range(2):  # every attempt meets 421; each one on a new connection
            with pytest.raises(SmtpResponseError) as info:
                await client.send(make_message())
            assert info.value.reply is not None and info.value.reply.code == 421


async def test_disconnect_after_terminator_is_delivery_unknown(
    start_sink: StartSink, make_message: MakeMessage
) -> None:
    port = await start_sink("-q", ".")
    async with _client(port) as client:
        with pytest.raises(SmtpDeliveryUnknownError):
            await client.send(make_message())


async def test_hard_rcpt_rejection(start_sink: StartSink, make_message: MakeMessage) -> None:
    port = await start_sink("-f", "RCPT")
    async with _client(port) as client:
        with pytest.raises(SmtpFailedRecipientsError) as info:
            await client.send(make_message("a@example.net, b@example.net"))
    assert info.value.result is None
    assert [f.recipient for f in info.value.failures] == ["a@example.net", "b@example.net"]
    assert not info.value.is_transient


async def test_soft_mail_rejection(start_sink: StartSink, make_message: MakeMessage) -> None:
    port = await start_sink("-r", "MAIL")
    async with _client(port) as client:
        with pytest.raises(SmtpResponseError) as info:
            await client.send(make_message())
    assert info.value.is_transient


async def test_abort_after_data_is_an_early_reply(
    start_sink: StartSink, make_message: MakeMessage
) -> None:
    port = await start_sink("-A", "0")
    async with _client(port) as client:
        with pytest.raises(SmtpResponseError) as info:
            await client.send(make_message(body="w" * 5_000_000 + "\n"))
    assert info.value.reply is not None and info.value.reply.code == 550


async def test_slow_reply_times_out(start_sink: StartSink, make_message: MakeMessage) -> None:
    port = await start_sink("-p", "-W", "MAIL:30")
    async with _client(port, Timeouts(mail=0.5)) as client:
        with pytest.raises(SmtpTimeoutError):
            await client.send(make_message())


async def test_out_of_order_pipelined_replies_are_a_protocol_error(
    start_sink: StartSink, make_message: MakeMessage
) -> None:
    # smtp-sink's -W delays MAIL's reply but answers the pipelined RCPT and DATA first
    # (503s); then "250" arrives as the answer to DATA, which RFC 2920 does not allow.
    port = await start_sink("-W", "MAIL:1")
    async with _client(port) as client:
        with pytest.raises(SmtpProtocolError):
            await client.send(make_message())
