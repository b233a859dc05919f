"""SmtpServer: the testing server's public face — listening, records, waiting, faults.

Every task the server starts lives in the nursery that :meth:`SmtpServer.serve` opens, so
closing the server (cancelling ``serve``, :meth:`SmtpServer.aclose`, or leaving
``async with``) leaves no task behind.  A connection handler that crashes does not take the
server down; its exception is recorded in :attr:`SmtpServer.crashes` and raised from
:meth:`SmtpServer.check`, from any ``wait_for*`` call, and when the ``async with`` block ends.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from ._config import DEFAULT_MECHANISMS, LOGIN_PROMPTS, ServerConfig, TlsMode
from ._faults import Action, Fault, FaultTable, Matcher
from ._io import PeerClosed
from ._records import ConnectionRecord, Message
from ._session import Session

__all__ = ["ServerCrashError", "SmtpServer"]


class ServerCrashError(Exception):
    """A connection handler of the testing server failed with an unexpected exception.

    ``crashes`` holds every such exception; the first is also the ``__cause__``.
    """

    def __init__(self, crashes: list[BaseException]) -> None:
        super().__init__(f"{len(crashes)} connection handler(s) crashed: {crashes[0]!r}")
        self.crashes = list(crashes)


class SmtpServer:
    """An SMTP server for tests, on loopback TCP or on a stream you give it.

    ::

        async with SmtpServer(credentials={"user": "pw"}) as server:
            ...  # connect to server.host, server.port trusting server.ssl_context
            message = await server.wait_for_message()

    or ``await nursery.start(server.serve)``.  ``tls`` is ``"starttls"`` (default),
    ``"implicit"`` or ``"none"``; ``disable`` names extensions not to offer (for example
    ``{"PIPELINING", "CHUNKING"}``); ``auth_mechanisms`` are the SASL mechanisms offered, in
    order (:data:`~trio_smtp.testing.DEFAULT_MECHANISMS` unless given; any of
    :data:`~trio_smtp.testing.ALL_MECHANISMS`), and ``credentials`` maps each user to a
    password or, for XOAUTH2 and OAUTHBEARER, to a bearer token; ``login_prompts`` are the
    (user name, password) prompts LOGIN sends, ``(b"Username:", b"Password:")`` unless given
    (``(b"User Name\\0", b"Password\\0")`` is aiosmtpd's); ``idle_timeout`` is how
    long a silent client is waited for (a whole command line, or any byte of TLS handshake,
    DATA or BDAT) before a 421 and close, RFC 5321 §4.5.3.2.7's 5 minutes by default;
    ``faults`` are :class:`Fault` objects to start with (more with :meth:`on`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = "localhost",
        tls: TlsMode | str = TlsMode.STARTTLS,
        credentials: Mapping[str, str] | None = None,
        auth_mechanisms: Iterable[str] = DEFAULT_MECHANISMS,
        login_prompts: tuple[bytes, bytes] = LOGIN_PROMPTS,
        require_tls: bool = False,
        require_auth: bool = False,
        disable: Collection[str] = (),
        max_message_size: int = 10 * 1024 * 1024,
        max_recipients: int = 100,
        idle_timeout: float | None = 300.0,
        faults: Iterable[Fault] = (),
    ) -> None:
        self.config = ServerConfig(
            hostname=hostname,
            tls=TlsMode(tls),
            credentials=dict(credentials or {}),
            auth_mechanisms=tuple(name.upper() for name in auth_mechanisms),
            login_prompts=login_prompts,
            require_tls=require_tls,
            require_auth=require_auth,
            disabled=frozenset(name.upper() for name in disable),
            max_message_size=max_message_size,
            max_recipients=max_recipients,
            idle_timeout=idle_timeout,
        )
        self._requested = (host, port)
        self._address: tuple[str, int] | None = None
        self._faults = FaultTable()
        for fault in faults:
            self._faults.add(fault)
        self._tls = None
        self._client_context: ssl.SSLContext | None = None
        if self.config.tls is not TlsMode.NONE:
            from ._tls import DEFAULT_NAMES, TlsMaterial

            self._tls = TlsMaterial(tuple(dict.fromkeys((*DEFAULT_NAMES, host, hostname))))
        #: Every connection so far, in order of arrival.
        self.connections: list[ConnectionRecord] = []
        #: Every message whose data was received in full, accepted or not, in order.
        self.messages: list[Message] = []
        #: Unexpected exceptions from connection handlers (see :meth:`check`).
        self.crashes: list[BaseException] = []
        self._changed = trio.Event()
        self._cancel_scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self._context_nursery: Any = None

    # -- where and how to connect ----------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._bound()[0]

    @property
    def port(self) -> int:
        """The TCP port (the real one when 0 was asked for)."""
        return self._bound()[1]

    def _bound(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the server is not listening yet: start it first")
        return self._address

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """A client-side context that trusts the server's certificate (and nothing else)."""
        if self._tls is None:
            raise RuntimeError("this server has no TLS (tls='none')")
        if self._client_context is None:
            self._client_context = self._tls.client_context()
        return self._client_context

    @property
    def ca_pem(self) -> bytes:
        """The PEM certificate of the CA that signed the server's certificate."""
        if self._tls is None:
            raise RuntimeError("this server has no TLS (tls='none')")
        return self._tls.ca_pem

    def write_ca_file(self, path: str | Path) -> Path:
        """Write :attr:`ca_pem` to ``path`` (for clients that take a CA file)."""
        target = Path(path)
        target.write_bytes(self.ca_pem)
        return target

    # -- faults ----------------------------------------------------------------------------

    def on(
        self, trigger: str, action: Action, *, match: Matcher = None, times: int | None = None
    ) -> Fault:
        """Script a fault: when ``trigger`` happens (and ``match`` agrees), do ``action``.

        See :mod:`trio_smtp.testing` for the triggers and actions.  Faults are consulted in
        the order they were added; the first that matches fires.  Returns the
        :class:`Fault`, whose ``hits`` counts how often it fired.
        """
        return self._faults.add(Fault(trigger, action, match=match, times=times))

    def remove_fault(self, fault: Fault) -> None:
        """Stop a fault from firing."""
        self._faults.remove(fault)

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """The faults in force, in the order they are consulted."""
        return list(self._faults.faults)

    # -- running ---------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled or :meth:`close`\\ d; for ``nursery.start``."""
        if self._cancel_scope is not None:
            raise RuntimeError("this server is already serving")
        host, port = self._requested
        listeners = await trio.open_tcp_listeners(port, host=host)
        listener = listeners[0]
        for extra in listeners[1:]:
            await extra.aclose()
        sockname = listener.socket.getsockname()
        self._address = (sockname[0], sockname[1])
        try:
            async with trio.open_nursery() as nursery:
                self._cancel_scope = nursery.cancel_scope
                nursery.start_soon(self._accept_loop, listener, nursery)
                task_status.started()
        finally:
            await trio.aclose_forcefully(listener)
            self._stopped.set()
            self._notify()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            stream = await listener.accept()
            nursery.start_soon(self._handle_connection, stream)

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        try:
            peer = stream.socket.getpeername()
        except OSError:
            peer = None
        try:
            await self._run(stream, peer, keep_crash=True)
        except Exception:
            pass  # kept in self.crashes by _run; surfaced through check(), not fatal here

    async def serve_stream(self, stream: trio.abc.Stream) -> ConnectionRecord:
        """Serve one session on ``stream`` in the calling task (e.g. a memory stream).

        Returns the connection's record when the session ends; an unexpected exception
        from the session is recorded and re-raised here.
        """
        return await self._run(stream, None, keep_crash=False)

    async def _run(
        self, stream: trio.abc.Stream, peer: object, *, keep_crash: bool
    ) -> ConnectionRecord:
        record = ConnectionRecord(number=len(self.connections) + 1, peer=peer)
        self.connections.append(record)
        self._notify()
        session = Session(
            stream,
            record,
            config=self.config,
            faults=self._faults,
            tls=self._tls,
            on_message=self._record_message,
            on_record=self._notify,
        )
        try:
            await session.run()
            record.close_reason = session.close_reason
        except (PeerClosed, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            record.close_reason = "peer"
            record.error = None if isinstance(exc, PeerClosed) else exc
        except trio.Cancelled:
            record.close_reason = "server"
            raise
        except Exception as exc:
            record.close_reason = "crash"
            record.error = exc
            if keep_crash:
                self.crashes.append(exc)  # before the notify below wakes any waiter
            raise
        finally:
            record.closed = True
            await trio.aclose_forcefully(session.io.stream)
            self._notify()
        return record

    def close(self) -> None:
        """Stop listening and end every connection (returns at once; see :meth:`aclose`)."""
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def aclose(self) -> None:
        """Stop the server and wait until every one of its tasks has finished."""
        self.close()
        if self._cancel_scope is not None:
            await self._stopped.wait()

    async def __aenter__(self) -> SmtpServer:
        self._context_nursery = trio.open_nursery()
        nursery = await self._context_nursery.__aenter__()
        try:
            await nursery.start(self.serve)
        except BaseException as exc:
            await self._context_nursery.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        # The body's exception is not handed to the nursery: it would come out wrapped in an
        # ExceptionGroup, and nothing in the nursery can fail but the server itself.
        await self._context_nursery.__aexit__(None, None, None)
        if exc is None:
            self.check()

    # -- records and waiting ---------------------------------------------------------------

    def _record_message(self, message: Message) -> None:
        self.messages.append(message)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def check(self) -> None:
        """Raise :class:`ServerCrashError` if a connection handler crashed."""
        if self.crashes:
            raise ServerCrashError(self.crashes) from self.crashes[0]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` is true; it is re-checked whenever the server records
        something (a connection, each command, each reply, TLS, a message, a close, a
        crash), never by polling.  Raises
        :class:`ServerCrashError` if a handler crashes meanwhile.  Use a cancel scope (or
        ``trio.fail_after``) to bound the wait."""
        while True:
            self.check()
            if predicate():
                await trio.lowlevel.checkpoint()
                return
            await self._changed.wait()

    async def wait_for_message(self, n: int = 1) -> Message:
        """Wait until ``n`` messages have been received; return the ``n``-th (from 1)."""
        if n < 1:
            raise ValueError("messages are counted from 1")
        await self.wait_for(lambda: len(self.messages) >= n)
        return self.messages[n - 1]

    async def wait_for_connection_closed(self, n: int = 1) -> ConnectionRecord:
        """Wait until the ``n``-th connection (from 1) has ended; return its record."""
        await self.wait_for(lambda: len(self.connections) >= n and self.connections[n - 1].closed)
        return self.connections[n - 1]
