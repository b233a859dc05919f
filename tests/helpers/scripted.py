"""A byte-exact scripted SMTP server that IS the client's stream (no task, no socket): it
parses what the client writes, answers from a script, and decides when its replies become
readable -- held until some groups are complete, cut after some replies (a lost
connection), stalled for ever -- so every interleaving a test names happens exactly.

``wire`` records the conversation in order: ``("C", bytes)`` for each client write and
``("S", bytes)`` for each chunk of replies the client received."""

from __future__ import annotations

from collections.abc import Callable

import trio

#: ``answer(message, verb, argument)``: the reply (CRLF included) to a command of message
#: ``message`` (0-based; RSET belongs to the message whose MAIL follows), or None for the
#: default (2xx).
Answer = Callable[[int, str, str], bytes | None]

EXTENSIONS = ("PIPELINING", "CHUNKING", "8BITMIME", "SIZE")


class ScriptedServer(trio.abc.Stream):
    def __init__(
        self,
        answer: Answer | None = None,
        *,
        hold: int = 1,
        cut_after: int | None = None,
        stall_at: int | None = None,
        late_from: int | None = None,
        extensions: tuple[str, ...] = EXTENSIONS,
    ) -> None:
        self.answer = answer or (lambda message, verb, argument: None)
        #: Replies are readable only once this many groups (ending in BDAT LAST) are
        #: complete; after that, each as its command is read.
        self.hold = hold
        #: After this many replies to transactions (EHLO's not counted), the connection is
        #: closed: the client reads EOF and a write fails.
        self.cut_after = cut_after
        #: The reply with this index (0-based, EHLO's not counted) never comes.
        self.stall_at = stall_at
        #: The replies from this index on arrive one second late (within every budget).
        self.late_from = late_from
        self._late = bytearray()
        self.wire: list[tuple[str, bytes]] = []
        #: The complete messages received: (index, sender argument, data).
        self.messages: list[tuple[int, bytes]] = []
        self._inbox = b""
        self._held: list[bytes] = []  # replies of the current and held groups
        self._outbox = bytearray()
        self._replies = 0  # transaction replies released
        self._groups = 0
        self._mails = 0
        self._eof = False
        self._stalled = False
        self._closing = False
        self._changed = trio.Event()
        ehlo = ["fuzz.example", *extensions]
        self._outbox += b"220 scripted.example ESMTP\r\n"
        self._ehlo = (
            "".join(f"250-{line}\r\n" for line in ehlo[:-1]) + f"250 {ehlo[-1]}\r\n"
        ).encode()

    # -- the stream --------------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self._eof:
            raise trio.BrokenResourceError("the scripted server closed the connection")
        self.wire.append(("C", bytes(data)))
        self._inbox += bytes(data)
        self._parse()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._outbox and self._late:
            await trio.sleep(1)
            self._outbox += self._late
            self._late.clear()
            self.late_from = None
        while not self._outbox and not self._eof:
            self._changed = trio.Event()
            await self._changed.wait()
        await trio.lowlevel.checkpoint()
        if not self._outbox:
            return b""
        size = len(self._outbox) if max_bytes is None else max_bytes
        data = bytes(self._outbox[:size])
        del self._outbox[:size]
        self.wire.append(("S", data))
        return data

    async def aclose(self) -> None:
        self._eof = True
        self._changed.set()
        await trio.lowlevel.checkpoint()

    # -- the server --------------------------------------------------------------------------

    def _parse(self) -> None:
        while b"\r\n" in self._inbox:
            line, rest = self._inbox.split(b"\r\n", 1)
            verb, _, argument = line.decode("utf-8", "replace").partition(" ")
            verb = verb.upper()
            if verb == "BDAT":
                size = int(argument.split()[0])
                if len(rest) < size:
                    return  # the chunk is not all here yet
                chunk, rest = rest[:size], rest[size:]
            self._inbox = rest
            if verb == "EHLO":
                self._release_raw(self._ehlo)
            elif verb == "QUIT":
                self._release_raw(b"221 2.0.0 bye\r\n")
                self._eof = True
            else:
                self._command(verb, argument, chunk if verb == "BDAT" else b"")

    def _command(self, verb: str, argument: str, chunk: bytes) -> None:
        last = verb == "BDAT" and argument.upper().endswith("LAST")
        if self._closing:  # RFC 5321 §3.8: after its 421 the server processes nothing more
            self._groups += last
            self._release_held()
            return
        if verb == "MAIL":
            self._mails += 1
        message = self._mails - (verb != "RSET")
        reply = self.answer(message, verb, argument)
        if reply is None:
            reply = {
                "RSET": b"250 2.0.0 reset\r\n",
                "MAIL": b"250 2.1.0 ok\r\n",
                "RCPT": b"250 2.1.5 ok\r\n",
            }.get(verb, b"250 2.0.0 queued as %d\r\n" % message)
        self._held.append(reply)
        self._closing = reply.startswith(b"421")
        if last:
            if reply.startswith(b"2"):
                self.messages.append((message, chunk))
            self._groups += 1
        self._release_held()

    def _release_held(self) -> None:
        if self._groups >= self.hold:  # from then on, every reply as its command is read
            held, self._held = self._held, []
            for one in held:
                self._release(one)

    def _release(self, reply: bytes) -> None:
        if self._eof or self._stalled:
            return
        if self._replies == self.stall_at:
            self._stalled = True
            return
        if self.cut_after is not None and self._replies >= self.cut_after:
            self._eof = True
            self._changed.set()
            return
        if self.late_from is not None and self._replies >= self.late_from:
            self._replies += 1
            self._late += reply
            return
        self._replies += 1
        self._release_raw(reply)
        if reply.startswith(b"421"):
            self._eof = True  # RFC 5321 §3.8: it closes
        elif self.cut_after is not None and self._replies >= self.cut_after:
            self._eof = True

    def _release_raw(self, data: bytes) -> None:
        self._outbox += data
        self._changed.set()

    def groups_before_first_reply(self) -> int:
        """How many ``BDAT ... LAST`` groups the client wrote before the first reply to a
        transaction reached it (EHLO's is the first reply after the greeting)."""
        groups = 0
        seen_ehlo = False
        for side, data in self.wire:
            if side == "C":
                groups += data.count(b" LAST\r\n")
            elif seen_ehlo:
                return groups
            elif b"PIPELINING" in data or b"CHUNKING" in data:
                seen_ehlo = True
        return groups
