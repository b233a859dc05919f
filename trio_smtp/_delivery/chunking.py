"""BDAT (RFC 3030 CHUNKING): the message body in sized chunks, no dot-stuffing.

Theory of operation: each chunk goes as ``BDAT n`` plus exactly ``n`` octets, the last as
``BDAT n LAST``.  The last chunk is known by reading one chunk ahead, so the final CRLF that
normalisation may add joins it.  With PIPELINING, one chunk's reply may be outstanding while
the next is written (RFC 3030 §4.2 allows pipelining BDAT): memory stays at about two chunks
and a refusal is seen after at most one more chunk.  A refused chunk stops the transfer (no
more chunks, never LAST; the server has dropped the transaction, RFC 3030 §2) and is raised
with its code; the caller then sends RSET.  A connection lost (or a reply that cannot be
parsed) once the write of ``BDAT n LAST`` completed and before its reply is
:class:`~trio_smtp.SmtpDeliveryUnknownError`; a failed write of it is not (its last octets
never left, so the message is incomplete).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from .._errors import SmtpResponseError
from .._io.progress import ProgressReporter
from .._io.transport import Transport
from ..protocol import Bdat, LineEndingNormalizer, Reply
from .outcome import LOST_OR_GARBLED, delivery_unknown

__all__ = ["send_bdat"]


async def send_bdat(
    transport: Transport,
    chunks: AsyncIterator[bytes],
    *,
    normalise: bool,
    reporter: ProgressReporter | None = None,
) -> Reply:
    """Send the body (CRLF-normalised unless ``normalise`` is False: BINARYMIME) and return
    the reply to ``BDAT n LAST``; raise SmtpResponseError when a chunk is refused.
    ``reporter`` counts the octets read from ``chunks`` (see :mod:`trio_smtp._io.progress`)."""
    normalizer = LineEndingNormalizer() if normalise else None
    sender = _ChunkSender(transport)
    ahead: bytes | None = None
    ahead_size = read = 0  # message octets in ahead, and read since (before normalising)
    async for chunk in chunks:
        read += len(chunk)
        encoded = normalizer.encode(chunk) if normalizer is not None else chunk
        if not encoded:
            continue
        if ahead is not None:
            if reporter is not None:
                reporter.wrote(ahead_size)
            await sender.send(ahead)
        ahead, ahead_size, read = encoded, read, 0
    last = (ahead or b"") + (normalizer.finish() if normalizer is not None else b"")
    if reporter is not None:
        reporter.finish(ahead_size + read)
    return await sender.send_last(last)


class _ChunkSender:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        # RFC 3030 §4.2: with PIPELINING a chunk may go before the previous reply is read.
        self.window = 1 if transport.extensions.pipelining else 0
        self.outstanding = 0

    async def send(self, chunk: bytes) -> None:
        transport = self.transport
        what = "the message data (BDAT)"
        await transport.receive_ready(what)  # replies ahead of their chunks: see encode
        data = transport.encode(Bdat(chunk), what)
        await transport.write(data, "the message data (BDAT)", transport.timeouts.data_block)
        self.outstanding += 1
        while self.outstanding > self.window:
            await self._read_chunk_reply()

    async def send_last(self, chunk: bytes) -> Reply:
        transport = self.transport
        what = "the end of data (BDAT LAST)"
        # design rule 10: a close or a reply that already came is seen before LAST goes
        # (a refusal of a chunk in flight is read first: then LAST never goes).
        await transport.receive_ready(what)
        while self.outstanding and transport.buffered:
            await self._read_chunk_reply()
        data = transport.encode(Bdat(chunk, last=True), what)
        # A write that fails is not "maybe delivered": LAST's octets never all left.
        await transport.write_end_of_data(data, what, transport.timeouts.data_block)
        self.outstanding += 1  # LAST's reply: read below, or drained after a refusal
        try:
            while self.outstanding > 1:
                # The previous chunk's reply, now with LAST out: a loss, or a reply we
                # cannot parse, is "maybe delivered".
                await self._read_chunk_reply(maybe_delivered=True)
            self.outstanding = 0
            return await transport.end_of_data_reply("BDAT LAST")
        except LOST_OR_GARBLED as exc:
            raise delivery_unknown(exc) from exc

    async def _read_chunk_reply(self, *, maybe_delivered: bool = False) -> None:
        transport = self.transport
        reply = await transport.read_reply(
            "BDAT", transport.timeouts.data_block, maybe_delivered=maybe_delivered
        )
        self.outstanding -= 1
        if reply.code // 100 == 2:
            return
        error = SmtpResponseError(
            "the server refused a chunk of the message (BDAT)", reply=reply, command="BDAT"
        )
        # The chunk already written after the refused one is answered too (and refused):
        # read it so the session stays in step for RSET; if that fails, never reuse it.
        try:
            while self.outstanding:
                await transport.read_reply("BDAT", transport.timeouts.data_block)
                self.outstanding -= 1
        except Exception:
            transport.mark_broken()
        raise error
