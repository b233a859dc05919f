"""trio_smtp: an SMTP client for Trio.

A sans-IO protocol core (:mod:`trio_smtp.protocol`), a client modelled on .NET's
``SmtpClient.SendAsync`` (:class:`SmtpClient`), and a testing server (:mod:`trio_smtp.testing`).

Public names are loaded on first use (:pep:`562`): ``import trio_smtp`` costs almost nothing,
and ``import trio_smtp.protocol`` imports neither Trio nor the client, as
:doc:`/typing` promises.  ``_EXPORTS`` says where each name lives; the ``TYPE_CHECKING``
block repeats it as ``from ._x import Name as Name`` for type checkers and IDEs, and
:file:`tests/test_public_api.py` keeps the two, ``__all__`` and docs/api.rst equal.
"""

import importlib as _importlib
import typing as _typing

__version__ = "0.1.0"

if _typing.TYPE_CHECKING:
    from ._client.client import ClientStatistics as ClientStatistics
    from ._client.client import SendCompleted as SendCompleted
    from ._client.client import SendResult as SendResult
    from ._client.client import SmtpClient as SmtpClient
    from ._client.pacing import Backoff as Backoff
    from ._client.pool import PoolStatistics as PoolStatistics
    from ._client.pool import SmtpPool as SmtpPool
    from ._client.send import send as send
    from ._client.streamed import BatchOutcome as BatchOutcome
    from ._client.streamed import OutcomeStream as OutcomeStream
    from ._config import DeliveryMethod as DeliveryMethod
    from ._config import Security as Security
    from ._config import Timeouts as Timeouts
    from ._credentials import OAuth2 as OAuth2
    from ._delivery.batch_items import OutgoingMessage as OutgoingMessage
    from ._delivery.pickup import PickupFile as PickupFile
    from ._delivery.pickup import parse_pickup_file as parse_pickup_file
    from ._delivery.pickup import read_pickup_file as read_pickup_file
    from ._errors import SmtpAuthenticationError as SmtpAuthenticationError
    from ._errors import SmtpConnectError as SmtpConnectError
    from ._errors import SmtpDeliveryTimeoutError as SmtpDeliveryTimeoutError
    from ._errors import SmtpDeliveryUnknownError as SmtpDeliveryUnknownError
    from ._errors import SmtpError as SmtpError
    from ._errors import SmtpFailedRecipientError as SmtpFailedRecipientError
    from ._errors import SmtpFailedRecipientsError as SmtpFailedRecipientsError
    from ._errors import SmtpProtocolError as SmtpProtocolError
    from ._errors import SmtpResponseError as SmtpResponseError
    from ._errors import SmtpStatusCode as SmtpStatusCode
    from ._errors import SmtpTimeoutError as SmtpTimeoutError
    from ._errors import SmtpTlsError as SmtpTlsError
    from ._message.dkim import DkimSigner as DkimSigner
    from ._message.options import DeliveryNotification as DeliveryNotification
    from ._message.options import DsnReturn as DsnReturn
    from .protocol import Reply as Reply

#: Public name -> the module that defines it (relative to this package).
_EXPORTS: dict[str, str] = {
    "ClientStatistics": "._client.client",
    "OutgoingMessage": "._delivery.batch_items",
    "SendCompleted": "._client.client",
    "SendResult": "._client.client",
    "SmtpClient": "._client.client",
    "DeliveryMethod": "._config",
    "Security": "._config",
    "Timeouts": "._config",
    "DkimSigner": "._message.dkim",
    "SmtpAuthenticationError": "._errors",
    "SmtpConnectError": "._errors",
    "SmtpDeliveryTimeoutError": "._errors",
    "SmtpDeliveryUnknownError": "._errors",
    "SmtpError": "._errors",
    "SmtpFailedRecipientError": "._errors",
    "SmtpFailedRecipientsError": "._errors",
    "SmtpProtocolError": "._errors",
    "SmtpResponseError": "._errors",
    "SmtpStatusCode": "._errors",
    "SmtpTimeoutError": "._errors",
    "SmtpTlsError": "._errors",
    "DeliveryNotification": "._message.options",
    "DsnReturn": "._message.options",
    "PickupFile": "._delivery.pickup",
    "parse_pickup_file": "._delivery.pickup",
    "read_pickup_file": "._delivery.pickup",
    "Backoff": "._client.pacing",
    "PoolStatistics": "._client.pool",
    "SmtpPool": "._client.pool",
    "send": "._client.send",
    "OAuth2": "._credentials",
    "BatchOutcome": "._client.streamed",
    "OutcomeStream": "._client.streamed",
    "Reply": ".protocol",
}

#: The public subpackages, also loaded on first attribute access.
_SUBPACKAGES = frozenset({"protocol", "sasl", "testing"})

__all__ = sorted(_EXPORTS)


# Hidden from type checkers: they see the names above, and a typo stays an error instead of
# becoming whatever __getattr__ returns.
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """Import the module behind a public name on first access (:pep:`562`), then keep
        the value in the module's namespace so later accesses are plain lookups."""
        if name in _SUBPACKAGES:
            return _importlib.import_module(f".{name}", __name__)
        try:
            module = _EXPORTS[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(_importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
