"""SASL mechanisms for SMTP AUTH, as sans-IO objects.

Pass one to :class:`~trio_smtp.SmtpClient` as ``credentials`` to force a mechanism, or
subclass :class:`Mechanism` to add one.  With ``credentials=(user, password)`` the client
picks the strongest mechanism the server offers (:data:`PREFERENCE`).
"""

from ._sasl import OAUTH_PREFERENCE as OAUTH_PREFERENCE
from ._sasl import PREFERENCE as PREFERENCE
from ._sasl import CramMd5 as CramMd5
from ._sasl import Login as Login
from ._sasl import Mechanism as Mechanism
from ._sasl import OAuthBearer as OAuthBearer
from ._sasl import Plain as Plain
from ._sasl import SaslError as SaslError
from ._sasl import ScramSha1 as ScramSha1
from ._sasl import ScramSha256 as ScramSha256
from ._sasl import XOAuth2 as XOAuth2
from ._sasl import choose_mechanism as choose_mechanism
from ._sasl import choose_oauth_mechanism as choose_oauth_mechanism
from ._sasl import decode_challenge as decode_challenge
from ._sasl import password_mechanisms as password_mechanisms
