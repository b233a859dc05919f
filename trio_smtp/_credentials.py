"""What ``credentials=`` accepts: a (user, password) pair, :class:`OAuth2` token credentials,
or a SASL mechanism object (:mod:`trio_smtp.sasl`).  A value the user builds, beside
:mod:`trio_smtp._config`; the session (:mod:`trio_smtp._delivery.session`) uses it for AUTH.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from . import sasl

__all__ = ["Credentials", "OAuth2"]


class OAuth2:
    """OAuth 2.0 bearer-token credentials, for ``credentials=`` (XOAUTH2 or OAUTHBEARER).

    ``token`` is an access token, or an async callable returning one: it is called on each
    new connection, just before AUTH, so a refreshed token is used when the client
    reconnects.  Whatever it raises fails the send as :class:`~trio_smtp.SmtpAuthenticationError`
    (the original exception is its ``__cause__``); it runs under the ``command`` deadline.

    The client uses OAUTHBEARER (RFC 7628, with the server's host and port) when the server
    offers it, else XOAUTH2 (Google, Microsoft 365); a token is never offered to a password
    mechanism.  The token never appears in ``repr()`` nor in the protocol log.
    """

    __slots__ = ("_token", "username")

    def __init__(self, username: str, token: str | Callable[[], Awaitable[str]]) -> None:
        if not isinstance(username, str) or not username:
            raise TypeError("OAuth2 username must be a non-empty str")
        if not (isinstance(token, str) or callable(token)):
            raise TypeError("OAuth2 token must be a str or an async callable returning one")
        #: The account the token belongs to (the ``user=`` / ``a=`` field).
        self.username = username
        self._token = token

    def __repr__(self) -> str:
        return f"OAuth2(username={self.username!r}, token=<hidden>)"

    async def get_token(self) -> str:
        """The token: the string given, or a fresh one from the callable."""
        if isinstance(self._token, str):
            await trio.lowlevel.checkpoint()
            return self._token
        token = await self._token()
        if not isinstance(token, str):
            raise TypeError(f"the OAuth2 token callable returned {type(token).__name__}, not str")
        return token


#: What ``credentials=`` accepts: a (user, password) pair, :class:`OAuth2` token
#: credentials, a mechanism object to force one (``auth_command()`` restarts it on each
#: connection), or a callable returning a new mechanism.
Credentials = tuple[str, str] | OAuth2 | sasl.Mechanism | Callable[[], sasl.Mechanism]
