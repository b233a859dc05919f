"""trio_smtp: an SMTP client for Trio.

A sans-IO protocol core (:mod:`trio_smtp.protocol`), a client modelled on .NET's
``SmtpClient.SendAsync`` (:class:`SmtpClient`), and a testing server (:mod:`trio_smtp.testing`).
"""

from ._client import ClientStatistics as ClientStatistics
from ._client import OutgoingMessage as OutgoingMessage
from ._client import SendCompleted as SendCompleted
from ._client import SendResult as SendResult
from ._client import SmtpClient as SmtpClient
from ._config import DeliveryMethod as DeliveryMethod
from ._config import Security as Security
from ._config import Timeouts as Timeouts
from ._dkim import DkimSigner as DkimSigner
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
from ._options import DeliveryNotification as DeliveryNotification
from ._options import DsnReturn as DsnReturn
from ._session import OAuth2 as OAuth2
from .protocol import Reply as Reply

__version__ = "0.1.0"
