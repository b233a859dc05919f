"""SmtpServer: the testing server's public face — listening, records, waiting, faults.

Every task the server starts lives in the nursery that :meth:`SmtpServer.serve` opens, so
closing the server (cancelling ``serve``, :meth:`SmtpServer.aclose`, or leaving
``async with``) leaves no task behind.

A connection handler that crashes never takes the server down: the exception is logged
(logger ``trio_smtp.testing``), counted, kept in :attr:`SmtpServer.crashes`, and only that
connection is closed.  For a test (``fail_on_crash=True``, the default) it is also raised
from :meth:`SmtpServer.check`, from any ``wait_for*`` call, and when the ``async with`` block
ends.  The accept loop survives running out of file descriptors or memory by pausing, as
:func:`trio.serve_listeners` does, and what the server keeps is bounded (sessions at once,
message size while reading, records kept), so a long ``trio-smtp serve`` stays bounded.
"""

from __future__ import annotations

import errno
import logging
import ssl
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import trio

from ._config import DEFAULT_MECHANISMS, LOGIN_PROMPTS, ServerConfig, TlsMode
from ._faults import Action, Fault, FaultNotFiredError, FaultTable, Matcher
from ._io import PeerClosed
from ._records import ConnectionRecord, Message, ServerStatistics, trim
from ._session import Session

__all__ = ["ServerCrashError", "SmtpServer"]

logger = logging.getLogger("trio_smtp.testing")

_R = TypeVar("_R")

# accept() failures that mean "out of resources for now", as in trio.serve_listeners: pause
# and retry rather than end the accept loop (and with it the server).
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_PAUSE = 0.1


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

    Bounds (``None``: no limit): ``max_connections`` sessions at once (100; at the limit the
    server stops accepting until one ends); ``max_message_size`` octets of message data
    (10 MiB; enforced while reading DATA and BDAT, so no more is held: 552);
    ``max_kept_messages``, ``max_kept_connections`` and ``max_kept_commands`` (1000 each)
    records kept, the most recent ones (:meth:`statistics` counts everything).
    ``fail_on_crash=False`` makes a handler crash a logged, counted event only, as for a
    long-running ``trio-smtp serve``.  ``require_faults_fired=True`` makes every fault
    ``required`` (see :meth:`on`).
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
        max_connections: int | None = 100,
        max_kept_messages: int | None = 1000,
        max_kept_connections: int | None = 1000,
        max_kept_commands: int | None = 1000,
        fail_on_crash: bool = True,
        require_faults_fired: bool = False,
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
            max_connections=max_connections,
            max_kept_messages=max_kept_messages,
            max_kept_connections=max_kept_connections,
            max_kept_commands=max_kept_commands,
        )
        #: Whether a handler crash fails the test (see :meth:`check`); else it is only
        #: logged and counted.
        self.fail_on_crash = fail_on_crash
        #: Whether every fault must fire at least once (see :meth:`check_faults_fired`).
        self.require_faults_fired = require_faults_fired
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
        #: Every connection so far (the last ``max_kept_connections``), in order of arrival.
        self.connections: list[ConnectionRecord] = []
        #: Every message whose data was received in full, accepted or not, in order (the
        #: last ``max_kept_messages``).
        self.messages: list[Message] = []
        #: Unexpected exceptions from connection handlers (see :meth:`check`; the last
        #: ``max_kept_connections``).
        self.crashes: list[BaseException] = []
        self._counts = {"connections": 0, "messages": 0, "crashes": 0, "accept_errors": 0}
        self._open = 0
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
        self,
        trigger: str,
        action: Action,
        *,
        match: Matcher = None,
        times: int | None = None,
        required: bool = False,
    ) -> Fault:
        """Script a fault: when ``trigger`` happens (and ``match`` agrees), do ``action``.

        See :mod:`trio_smtp.testing` for the triggers and actions (``"START_OF_DATA"`` and
        ``"END_OF_DATA"`` cover DATA and BDAT alike; ``match`` predicates get the parsed
        address for MAIL and RCPT).  Faults are consulted in the order they were added; the
        first that matches fires.  Returns the :class:`Fault`, whose ``hits`` counts how
        often it fired.  ``required=True``: if it never fired, the ``async with`` block
        raises :class:`FaultNotFiredError` at its end (see :meth:`check_faults_fired`).
        """
        fault = Fault(trigger, action, match=match, times=times, required=required)
        return self._faults.add(fault)

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
        # A slot per session: at max_connections the loop waits here, and new clients wait
        # in the kernel's listen backlog, costing the server nothing.
        limit = self.config.max_connections
        slots = None if limit is None else trio.Semaphore(limit)
        while True:
            if slots is not None:
                await slots.acquire()
            try:
                stream = await self._accept(listener)
            except BaseException:
                if slots is not None:
                    slots.release()
                raise
            nursery.start_soon(self._handle_connection, stream, slots)

    async def _accept(self, listener: trio.SocketListener) -> trio.SocketStream:
        """``listener.accept()``, pausing while the process is out of descriptors or memory
        (as :func:`trio.serve_listeners` does) instead of failing: the server serves again
        once connections have ended."""
        failures = 0
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                self._counts["accept_errors"] += 1
                if not failures:
                    logger.warning("accept() failed (%s); pausing until it succeeds", exc)
                failures += 1
                await trio.sleep(_ACCEPT_PAUSE)
                continue
            if failures:
                logger.warning("accepting again after %d failed attempts", failures)
            return stream

    async def _handle_connection(
        self, stream: trio.SocketStream, slots: trio.Semaphore | None
    ) -> None:
        try:
            try:
                peer = stream.socket.getpeername()
            except OSError:
                peer = None
            await self._run(stream, peer, keep_crash=True)
        except Exception:
            pass  # logged, counted and kept by _run; fatal only to this connection
        finally:
            if slots is not None:
                slots.release()

    async def serve_stream(self, stream: trio.abc.Stream) -> ConnectionRecord:
        """Serve one session on ``stream`` in the calling task (e.g. a memory stream).

        Returns the connection's record when the session ends; an unexpected exception
        from the session is recorded and re-raised here.
        """
        return await self._run(stream, None, keep_crash=False)

    async def _run(
        self, stream: trio.abc.Stream, peer: object, *, keep_crash: bool
    ) -> ConnectionRecord:
        self._counts["connections"] += 1
        record = ConnectionRecord(number=self._counts["connections"], peer=peer)
        self.connections.append(record)
        trim(self.connections, self.config.max_kept_connections)
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
        self._open += 1
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
                self._crashed(record, exc)  # before the notify below wakes any waiter
            raise
        finally:
            self._open -= 1
            record.closed = True
            await trio.aclose_forcefully(session.io.stream)
            self._notify()
        return record

    def _crashed(self, record: ConnectionRecord, exc: Exception) -> None:
        self._counts["crashes"] += 1
        self.crashes.append(exc)
        trim(self.crashes, self.config.max_kept_connections)
        logger.error("connection %d (%s) crashed", record.number, record.peer, exc_info=exc)

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
            self.check_faults_fired()

    # -- records and waiting ---------------------------------------------------------------

    def _record_message(self, message: Message) -> None:
        self._counts["messages"] += 1
        self.messages.append(message)
        trim(self.messages, self.config.max_kept_messages)
        self._notify()

    def statistics(self) -> ServerStatistics:
        """Counters since the server was made, including what is no longer kept."""
        return ServerStatistics(open_connections=self._open, **self._counts)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def check_faults_fired(self) -> None:
        """Raise :class:`FaultNotFiredError` if a required fault (``required=True``, or any
        with ``require_faults_fired=True``) never fired.  Called when the ``async with``
        block ends without an exception (so also by the ``smtp_server`` fixture)."""
        unfired = self._faults.unfired(all_required=self.require_faults_fired)
        if unfired:
            raise FaultNotFiredError(unfired)

    def check(self) -> None:
        """Raise :class:`ServerCrashError` if a connection handler crashed (never with
        ``fail_on_crash=False``)."""
        if self.crashes and self.fail_on_crash:
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
        """Wait until ``n`` messages have been received; return the ``n``-th (from 1).

        Raises :exc:`LookupError` if it is no longer kept (``max_kept_messages``).
        """
        if n < 1:
            raise ValueError("messages are counted from 1")
        await self.wait_for(lambda: self._counts["messages"] >= n)
        return _kept(self.messages, n, self._counts["messages"], "message")

    async def wait_for_connection_closed(self, n: int = 1) -> ConnectionRecord:
        """Wait until the ``n``-th connection (from 1) has ended; return its record.

        Raises :exc:`LookupError` if it is no longer kept (``max_kept_connections``).
        """
        if n < 1:
            raise ValueError("connections are counted from 1")
        total = self._counts

        def closed() -> bool:
            if total["connections"] < n:
                return False
            return _kept(self.connections, n, total["connections"], "connection").closed

        await self.wait_for(closed)
        return _kept(self.connections, n, total["connections"], "connection")


def _kept(records: list[_R], n: int, total: int, what: str) -> _R:
    """The ``n``-th of ``total`` records (from 1) when ``records`` holds the last ones."""
    index = n - 1 - (total - len(records))
    if index < 0:
        raise LookupError(f"{what} {n} is no longer kept (only the last {len(records)} are)")
    return records[index]
