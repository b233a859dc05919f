"""Message bodies read at send time: binary files, paths and async iterables of bytes.

Theory of operation: :func:`streamed_body` recognises the source synchronously (so
``send_async`` can raise ``TypeError`` at once); :meth:`StreamedBody.open` runs at send time,
before MAIL, and learns the size when it can (a regular file's ``fstat`` minus its position,
for RFC 1870 SIZE); :meth:`StreamedBody.chunks` then yields chunks of about
:data:`CHUNK_SIZE` octets.  Blocking reads of ordinary file objects run in a worker thread
(``trio.to_thread``), so the event loop never waits on the disk, and only one chunk is held
at a time: memory stays bounded whatever the size of the message.

A file object passed by the caller is never closed here (it is the caller's; with
``send_async`` it must stay open until the completion event); a file opened from a path is
closed when the send ends.
"""

from __future__ import annotations

import inspect
import io
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import trio

__all__ = ["CHUNK_SIZE", "StreamedBody", "SupportsAsyncRead", "SupportsRead", "streamed_body"]


class SupportsRead(Protocol):
    """A binary file object: ``read(n)`` returns up to ``n`` bytes, ``b""`` at the end."""

    def read(self, n: int, /) -> bytes: ...


class SupportsAsyncRead(Protocol):
    """An async binary file (``trio.open_file(path, "rb")``): ``await read(n)``."""

    async def read(self, n: int, /) -> bytes: ...


#: Octets read per chunk: large enough to amortise each read and write, small enough that a
#: few of them in flight stay far below the memory bound.
CHUNK_SIZE = 256 * 1024


class StreamedBody:
    """A body that is read while it is sent (see the module docstring)."""

    def __init__(
        self,
        *,
        path: os.PathLike[str] | os.PathLike[bytes] | None = None,
        file: Any = None,
        iterable: AsyncIterable[bytes] | None = None,
    ) -> None:
        self._path = path
        self._file = file
        self._iterable = iterable
        self._owned: Any = None  # a file we opened ourselves (from a path)
        #: The size in octets when known after :meth:`open` (RFC 1870 SIZE), else None.
        self.size: int | None = None

    @property
    def description(self) -> str:
        """What the body comes from, for error messages."""
        if self._path is not None:
            return f"file {os.fsdecode(self._path)!r}"
        return "file object" if self._file is not None else "async iterable"

    async def open(self) -> None:
        """Open a path and learn the size when the source has one (a regular file)."""
        if self._path is not None and self._owned is None:
            self._owned = await trio.to_thread.run_sync(open, self._path, "rb")
        target = self._owned if self._owned is not None else self._file
        if target is not None:
            raw = getattr(target, "wrapped", target)  # a trio async file wraps a real one
            self.size = await trio.to_thread.run_sync(_remaining_size, raw)

    async def aclose(self) -> None:
        """Close the file opened from a path (the caller's own file is left open).

        The caller bounds this wait (the client: a shielded scope with design rule 9's
        short deadline); cancelled, it stops waiting and the close goes on in its worker
        thread, so a file system that hangs cannot hold the send."""
        owned, self._owned = self._owned, None
        if owned is not None:
            await trio.to_thread.run_sync(owned.close, abandon_on_cancel=True)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, in chunks of about CHUNK_SIZE octets (never an empty chunk)."""
        if self._iterable is not None:
            async for chunk in _coalesced(self._iterable):
                yield chunk
            return
        read = _reader(self._owned if self._owned is not None else self._file)
        while True:
            chunk = await read()
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(f"the file must be opened in binary mode (read gave {chunk!r:.40})")
            if not chunk:
                return
            yield bytes(chunk)


def _remaining_size(file: Any) -> int | None:
    """Octets from the current position to the end of a regular file, else None."""
    try:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        return max(info.st_size - int(file.tell()), 0)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _reader(file: Any) -> Callable[[], Awaitable[Any]]:
    if inspect.iscoroutinefunction(file.read):
        return lambda: file.read(CHUNK_SIZE)  # type: ignore[no-any-return,unused-ignore]
    return lambda: trio.to_thread.run_sync(file.read, CHUNK_SIZE)


async def _coalesced(iterable: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Join small chunks up to CHUNK_SIZE (fewer writes); larger chunks pass as they are."""
    pending = bytearray()
    async for chunk in iterable:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"an async iterable body must yield bytes, not {type(chunk).__name__}")
        if not pending and len(chunk) >= CHUNK_SIZE:
            yield bytes(chunk)
            continue
        pending += chunk
        if len(pending) >= CHUNK_SIZE:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


def streamed_body(message: object) -> StreamedBody | None:
    """The StreamedBody for a file, path or async iterable; None for anything else.

    ``str`` is not taken as a path (too easily a message by mistake): pass a
    :class:`pathlib.Path`.  A text-mode file is a ``TypeError``.
    """
    if isinstance(message, (str, bytes, bytearray, memoryview)):
        return None
    if isinstance(message, os.PathLike):
        return StreamedBody(path=message)
    if callable(getattr(message, "read", None)):
        if isinstance(getattr(message, "wrapped", message), io.TextIOBase):
            raise TypeError("the file must be opened in binary mode ('rb')")
        return StreamedBody(file=message)
    if hasattr(message, "__aiter__"):
        return StreamedBody(iterable=message)  # type: ignore[arg-type,unused-ignore]
    return None
