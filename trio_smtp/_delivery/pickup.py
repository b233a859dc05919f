"""Pickup-directory delivery: one ``.eml`` file per message, written atomically.

Theory of operation.  .NET's ``SmtpClient`` with ``SpecifiedPickupDirectory`` writes
``<guid>.eml`` into a directory that a mail agent (IIS SMTP, or anything else) watches.  The
envelope travels inside the file as leading ``X-Sender:`` / ``X-Receiver:`` lines, which
.NET's ``MailMessage.PrepareEnvelopeHeaders`` writes before the message's own headers and IIS
strips before relaying.  We write the same format, so files are interchangeable:

    X-Sender: sender@example.org
    X-Receiver: first@example.net
    X-Receiver: second@example.net
    <the message, CRLF line ends, not dot-stuffed>

Atomicity: the bytes go into a hidden temporary file (``.<hex>.eml.tmp``) in the same
directory, which is flushed and fsynced, then renamed with ``os.replace`` to ``<hex>.eml``
(a same-directory rename is atomic on POSIX and NTFS), and the directory is fsynced so the
rename survives a crash.  An agent therefore sees either nothing or the whole file.  On any
failure or cancellation before the rename, the temporary file is closed and removed in a
shielded scope.  The rename and the directory fsync run in one worker thread call, which
Trio does not abandon on cancellation: once the rename has happened the call returns the
path, so a message is never reported as failed after it became visible.

All file I/O runs in ``trio.to_thread.run_sync``: the event loop never blocks on the disk.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterable, Sequence
from pathlib import Path
from typing import IO, NamedTuple, TypeAlias

import trio

__all__ = ["PickupFile", "deliver_to_pickup", "parse_pickup_file", "read_pickup_file"]

#: Data is handed to the worker thread in blocks of about this size (bounded memory).
_WRITE_BLOCK = 256 * 1024

_SENDER_PREFIX = b"x-sender:"
_RECEIVER_PREFIX = b"x-receiver:"

#: What :func:`deliver_to_pickup` accepts as the message.
MessageData: TypeAlias = bytes | bytearray | memoryview | AsyncIterable[bytes]


class PickupFile(NamedTuple):
    """The contents of a pickup file: the envelope and the message (CRLF line ends)."""

    #: The reverse-path (``""`` for the null reverse-path ``<>``).
    sender: str
    #: The forward-paths, in order.
    recipients: list[str]
    #: The message itself, without the envelope lines.
    data: bytes


# --------------------------------------------------------------------------- writing


def _check_address(address: str, what: str) -> None:
    # The envelope lines are header lines: a CR or LF would let an address inject more
    # recipients (or end the envelope early), so control characters are refused outright.
    if not isinstance(address, str):
        raise TypeError(f"{what} must be a str, not {type(address).__name__}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in address):
        raise ValueError(f"{what} contains a control character: {address!r}")
    if "<" in address or ">" in address:
        raise ValueError(f"{what} must be a bare address without angle brackets: {address!r}")
    if address != address.strip():
        raise ValueError(f"{what} has leading or trailing white space: {address!r}")


def _envelope_lines(sender: str, recipients: Sequence[str]) -> bytes:
    if isinstance(recipients, str):
        raise TypeError("recipients must be a sequence of addresses, not a str")
    _check_address(sender, "sender")
    if not recipients:
        raise ValueError("at least one recipient is required")
    for recipient in recipients:
        _check_address(recipient, "recipient")
        if not recipient:
            raise ValueError("a recipient address is empty")
    # "<>" stands for the null reverse-path (RFC 5321 §4.5.5), which has no bare form.
    lines = [f"X-Sender: {sender or '<>'}\r\n"]
    lines.extend(f"X-Receiver: {recipient}\r\n" for recipient in recipients)
    # Non-ASCII addresses (SMTPUTF8, RFC 6531) are kept as UTF-8, as .NET does with
    # SmtpDeliveryFormat.International.
    return "".join(lines).encode("utf-8")


class _CrlfNormaliser:
    """Turns bare CR and bare LF into CRLF, across chunk boundaries (no dot-stuffing)."""

    def __init__(self) -> None:
        self._pending_cr = False
        self._wrote_any = False
        self._ends_with_crlf = False

    def feed(self, chunk: bytes) -> bytes:
        if self._pending_cr and chunk[:1] == b"\n":
            # The CR that ended the previous chunk was already written as CRLF.
            chunk = chunk[1:]
        if not chunk:
            return b""
        self._pending_cr = chunk[-1:] == b"\r"
        # Three C-speed passes: CRLF -> LF, CR -> LF, LF -> CRLF.
        out = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        # Every LF in the output follows a CR, so a final LF means a final CRLF.
        self._wrote_any = True
        self._ends_with_crlf = out[-1:] == b"\n"
        return out

    def finish(self) -> bytes:
        """A final CRLF when the message does not end with one, as on the wire (§4.1.1.4)."""
        return b"\r\n" if self._wrote_any and not self._ends_with_crlf else b""


async def _chunks(data: MessageData) -> AsyncIterable[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield bytes(data)
        return
    if not isinstance(data, AsyncIterable):
        raise TypeError(
            f"data must be bytes or an async iterable of bytes, not {type(data).__name__}"
        )
    async for chunk in data:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"data chunks must be bytes, not {type(chunk).__name__}")
        yield bytes(chunk)


def _unique_name() -> str:
    # uuid is imported here, not with the module: it cost ~0.6 ms of every
    # ``import trio_smtp``, for a name only pickup delivery needs.
    import uuid

    return uuid.uuid4().hex


def _open_temporary(directory: Path) -> tuple[IO[bytes], Path]:
    if not directory.exists():
        raise FileNotFoundError(
            errno.ENOENT, "pickup directory does not exist (it is never created)", str(directory)
        )
    if not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "pickup path is not a directory", str(directory))
    # A leading dot and a ".tmp" suffix: pickup agents skip both; O_EXCL never reuses a file.
    temporary = directory / f".{_unique_name()}.eml.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o666)
    return os.fdopen(fd, "wb"), temporary


def _fsync_directory(directory: Path) -> None:
    if os.name == "nt":  # Windows cannot open a directory; NTFS journals the rename.
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems (and some network mounts) refuse fsync on a directory.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _commit(file: IO[bytes], temporary: Path, directory: Path) -> Path:
    file.flush()
    os.fsync(file.fileno())
    file.close()
    final = directory / f"{_unique_name()}.eml"
    os.replace(temporary, final)  # the commit point: atomic within one directory
    _fsync_directory(directory)
    return final


def _discard(file: IO[bytes], temporary: Path) -> None:
    try:
        file.close()
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass


class _BlockWriter:
    """Collects data into blocks and hands each to a worker thread."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._buffer = bytearray()

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _WRITE_BLOCK:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer:
            block, self._buffer = bytes(self._buffer), bytearray()
            await trio.to_thread.run_sync(self._file.write, block)


def _check_message_start(head: bytes) -> None:
    # A message whose first header is X-Receiver would read back as one more recipient.
    if head[: len(_RECEIVER_PREFIX)].lower() == _RECEIVER_PREFIX:
        raise ValueError(
            "the message starts with an X-Receiver header, which would be read back as part "
            "of the envelope; remove or move that header"
        )


async def _write_message(writer: _BlockWriter, envelope: bytes, data: MessageData) -> None:
    await writer.write(envelope)
    normaliser = _CrlfNormaliser()
    head = b""
    async for chunk in _chunks(data):
        out = normaliser.feed(chunk)
        if len(head) < len(_RECEIVER_PREFIX):
            head += out[: len(_RECEIVER_PREFIX)]
            _check_message_start(head)
        await writer.write(out)
    await writer.write(normaliser.finish())
    await writer.flush()


async def deliver_to_pickup(
    directory: str | os.PathLike[str],
    sender: str,
    recipients: Sequence[str],
    data: MessageData,
) -> Path:
    """Write one message into a pickup directory, atomically, and return its path.

    The file is named ``<32 hex digits>.eml`` and holds an ``X-Sender:`` line, one
    ``X-Receiver:`` line per recipient, then ``data`` with every bare CR or LF turned into
    CRLF and a final CRLF added if missing (no dot-stuffing): the format .NET's
    ``SmtpClient`` writes and IIS reads.  ``data`` is bytes or an async iterable of bytes,
    streamed in bounded memory.  A file never appears under its final name until it is
    complete and fsynced; on failure or cancellation nothing is left behind.

    Raises :exc:`TypeError`/:exc:`ValueError` for a bad envelope (control characters, angle
    brackets, no recipients) before touching the disk; :exc:`FileNotFoundError` when the
    directory does not exist (it is never created, as in .NET); :exc:`NotADirectoryError`
    when it is not a directory; any other :exc:`OSError` from the file system as is.
    """
    envelope = _envelope_lines(sender, recipients)
    directory = Path(os.fspath(directory))
    file, temporary = await trio.to_thread.run_sync(_open_temporary, directory)
    try:
        await _write_message(_BlockWriter(file), envelope, data)
        # Not abandoned on cancellation: once this returns the file is committed.
        return await trio.to_thread.run_sync(_commit, file, temporary, directory)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_discard, file, temporary)
        raise


# --------------------------------------------------------------------------- reading


def _header_value(line: bytes, prefix: bytes) -> str:
    value = line[len(prefix) :].strip().decode("utf-8")
    # Tolerate "<addr>" as written by other tools; "<>" is the null reverse-path.
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value


def parse_pickup_file(raw: bytes) -> PickupFile:
    """Split the bytes of a pickup file into its envelope and message.

    The envelope is the leading ``X-Sender:`` line (exactly one, names compared without
    regard to case, as IIS does) and the ``X-Receiver:`` lines that follow it.  Raises
    :exc:`ValueError` when the file does not start with that envelope.
    """
    position = 0
    sender: str | None = None
    recipients: list[str] = []
    while True:
        end = raw.find(b"\n", position)
        if end < 0:
            break
        line = raw[position : end + 1]
        lowered = line[: len(_RECEIVER_PREFIX)].lower()
        if sender is None and lowered.startswith(_SENDER_PREFIX):
            sender = _header_value(line, _SENDER_PREFIX)
        elif sender is not None and lowered == _RECEIVER_PREFIX:
            recipients.append(_header_value(line, _RECEIVER_PREFIX))
        else:
            break
        position = end + 1
    if sender is None:
        raise ValueError("not a pickup file: it does not start with an X-Sender line")
    if not recipients:
        raise ValueError("not a pickup file: no X-Receiver line follows X-Sender")
    return PickupFile(sender, recipients, raw[position:])


async def read_pickup_file(path: str | os.PathLike[str]) -> PickupFile:
    """Read a pickup file: one written by :class:`~trio_smtp.SmtpClient` with
    :attr:`~trio_smtp.DeliveryMethod.PICKUP_DIRECTORY` (or by .NET, or IIS tools).

    Returns a :class:`PickupFile`, ``(sender, recipients, data)``; see
    :func:`parse_pickup_file`.  The file is read in a worker thread (``trio.Path``).
    """
    raw = await trio.Path(os.fspath(path)).read_bytes()
    return parse_pickup_file(raw)
