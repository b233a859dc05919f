"""Pickup-directory delivery: file format, atomicity, cleanup, errors."""

from __future__ import annotations

import email
import email.policy
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_smtp._delivery.pickup import deliver_to_pickup, parse_pickup_file, read_pickup_file

MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"


def entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


async def test_writes_one_eml_file_with_envelope_first(tmp_path: Path) -> None:
    path = await deliver_to_pickup(
        tmp_path, "a@example.org", ["b@example.net", "c@example.com"], MESSAGE
    )
    assert entries(tmp_path) == [path.name]
    assert path.parent == tmp_path
    assert path.suffix == ".eml"
    assert len(path.stem) == 32 and int(path.stem, 16) >= 0
    # The .NET / IIS layout: X-Sender, one X-Receiver per recipient, then the message.
    assert path.read_bytes() == (
        b"X-Sender: a@example.org\r\n"
        b"X-Receiver: b@example.net\r\n"
        b"X-Receiver: c@example.com\r\n" + MESSAGE
    )


async def test_envelope_round_trip(tmp_path: Path) -> None:
    recipients = ["b@example.net", "Ünïcode@exämple.net", "c@example.com"]
    path = await deliver_to_pickup(str(tmp_path), "a@example.org", recipients, MESSAGE)
    sender, got_recipients, data = await read_pickup_file(path)
    assert sender == "a@example.org"
    assert got_recipients == recipients
    assert data == MESSAGE
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Subject"] == "hi"


async def test_null_reverse_path_round_trips(tmp_path: Path) -> None:
    path = await deliver_to_pickup(tmp_path, "", ["b@example.net"], MESSAGE)
    assert path.read_bytes().startswith(b"X-Sender: <>\r\n")
    assert (await read_pickup_file(path)).sender == ""


async def test_line_ends_normalised_without_dot_stuffing(tmp_path: Path) -> None:
    raw = b"Subject: x\n\nline one\rline two\r\n.leading dot\n.\nlast"
    path = await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], raw)
    data = (await read_pickup_file(path)).data
    assert data == b"Subject: x\r\n\r\nline one\r\nline two\r\n.leading dot\r\n.\r\nlast\r\n"


async def test_crlf_split_across_chunks_is_not_doubled(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for piece in (b"Subject: x\r", b"\n\r", b"\nbody\r", b"", b"\n", b"end\r"):
            yield piece

    path = await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], chunks())
    data = (await read_pickup_file(path)).data
    assert data == b"Subject: x\r\n\r\nbody\r\nend\r\n"


async def test_streams_large_async_iterable(tmp_path: Path) -> None:
    block = b"0123456789abcdef" * 4096 + b"\n"  # 64 KiB lines, LF only

    async def chunks() -> AsyncIterator[bytes]:
        yield b"Subject: big\n\n"
        for _ in range(40):
            yield block

    path = await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], chunks())
    data = (await read_pickup_file(path)).data
    expected_body = block.replace(b"\n", b"\r\n") * 40
    assert data == b"Subject: big\r\n\r\n" + expected_body


async def test_concurrent_deliveries_get_unique_names(tmp_path: Path) -> None:
    paths: list[Path] = []

    async def one(i: int) -> None:
        body = b"Subject: %d\r\n\r\n%d\r\n" % (i, i)
        paths.append(await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], body))

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(one, i)
    assert len(set(paths)) == 50
    assert entries(tmp_path) == sorted(p.name for p in paths)
    subjects = set()
    for path in paths:
        subjects.add((await read_pickup_file(path)).data.split(b"\r\n")[0])
    assert subjects == {b"Subject: %d" % i for i in range(50)}


class Boom(Exception):
    pass


async def test_failure_mid_write_leaves_nothing(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"Subject: x\r\n\r\n" + b"x" * 600_000  # more than one block reaches the disk
        yield b"more"
        raise Boom

    with pytest.raises(Boom):
        await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], chunks())
    assert entries(tmp_path) == []


async def test_cancellation_mid_write_leaves_nothing(tmp_path: Path) -> None:
    started = trio.Event()
    seen: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"Subject: x\r\n\r\n" + b"x" * 600_000
        seen.extend(os.listdir(tmp_path))  # the temporary file exists by now
        started.set()
        await trio.sleep_forever()
        yield b"never"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            deliver_to_pickup, tmp_path, "a@example.org", ["b@example.net"], chunks()
        )
        await started.wait()
        nursery.cancel_scope.cancel()
    # The temporary file was hidden from pickup agents, and is gone now.
    assert len(seen) == 1 and seen[0].startswith(".") and seen[0].endswith(".tmp")
    assert entries(tmp_path) == []


async def test_bad_chunk_type_leaves_nothing(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"Subject: x\r\n\r\n"
        yield "text"  # type: ignore[misc]

    with pytest.raises(TypeError, match="chunks must be bytes"):
        await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], chunks())
    assert entries(tmp_path) == []


async def test_missing_directory_is_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="pickup directory does not exist") as info:
        await deliver_to_pickup(missing, "a@example.org", ["b@example.net"], MESSAGE)
    assert info.value.filename == str(missing)
    assert not missing.exists()  # never created


async def test_file_instead_of_directory(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        await deliver_to_pickup(target, "a@example.org", ["b@example.net"], MESSAGE)


@pytest.mark.parametrize(
    ("sender", "recipients", "error"),
    [
        ("a@example.org", [], ValueError),
        ("a@example.org", ["b@example.net\r\nX-Receiver: evil@example.com"], ValueError),
        ("a@example.org\n", ["b@example.net"], ValueError),
        ("<a@example.org>", ["b@example.net"], ValueError),
        ("a@example.org", [""], ValueError),
        ("a@example.org", " b@example.net", TypeError),
        ("a@example.org", [b"b@example.net"], TypeError),
    ],
)
async def test_bad_envelope_rejected_before_any_file(
    tmp_path: Path, sender: str, recipients: list[str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await deliver_to_pickup(tmp_path, sender, recipients, MESSAGE)
    assert entries(tmp_path) == []


async def test_message_starting_with_x_receiver_is_refused(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"X-Rec"
        yield b"eiver: hidden@example.com\r\n\r\nbody\r\n"

    with pytest.raises(ValueError, match="X-Receiver"):
        await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], chunks())
    assert entries(tmp_path) == []


async def test_message_with_its_own_x_sender_round_trips(tmp_path: Path) -> None:
    data = b"X-Sender: someone@else.org\r\n" + MESSAGE
    path = await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], data)
    assert await read_pickup_file(path) == ("a@example.org", ["b@example.net"], data)


def test_parse_reads_dotnet_style_file() -> None:
    # As written by System.Net.Mail with SpecifiedPickupDirectory (header names any case).
    raw = (
        b"X-Sender: from@example.org\r\n"
        b"x-receiver: <to@example.net>\r\n"
        b"X-Receiver: cc@example.net\r\n"
        b"MIME-Version: 1.0\r\nFrom: from@example.org\r\n\r\nbody\r\n"
    )
    parsed = parse_pickup_file(raw)
    assert parsed.sender == "from@example.org"
    assert parsed.recipients == ["to@example.net", "cc@example.net"]
    assert parsed.data == b"MIME-Version: 1.0\r\nFrom: from@example.org\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@example.org\r\n\r\nbody\r\n",
        b"X-Sender: a@example.org\r\nFrom: a@example.org\r\n\r\nbody\r\n",
        b"X-Receiver: b@example.net\r\nX-Sender: a@example.org\r\n\r\n",
    ],
)
def test_parse_rejects_files_without_envelope(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a pickup file"):
        parse_pickup_file(raw)


async def test_other_tasks_run_while_writing(tmp_path: Path) -> None:
    # Another task keeps running while a large message is written.
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 300_000

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], chunks())
        done = True
    assert ticks > 0


async def test_failed_rename_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: object, dst: object) -> None:
        raise PermissionError("rename refused")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError, match="rename refused"):
        await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], MESSAGE)
    assert entries(tmp_path) == []


async def test_cancellation_during_commit_still_delivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from trio_smtp._delivery import pickup as _pickup

    entered, release = threading.Event(), threading.Event()
    real_commit = _pickup._commit

    def slow_commit(*args: Any) -> Path:
        entered.set()
        release.wait(30)
        return real_commit(*args)

    monkeypatch.setattr(_pickup, "_commit", slow_commit)
    delivered: list[Path] = []

    async def send() -> None:
        delivered.append(
            await deliver_to_pickup(tmp_path, "a@example.org", ["b@example.net"], MESSAGE)
        )

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await trio.to_thread.run_sync(entered.wait, 30)
            scope.cancel()  # arrives while the rename is under way
            release.set()
    # The commit is not interrupted: the call returned the path of a complete file.
    assert len(delivered) == 1
    assert entries(tmp_path) == [delivered[0].name]
    assert (await read_pickup_file(delivered[0])).data == MESSAGE
