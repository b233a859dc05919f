"""SASL mechanisms for SMTP AUTH, as sans-IO objects.

Pass one to :class:`~trio_smtp.SmtpClient` as ``credentials`` to force a mechanism, or
subclass :class:`Mechanism` to add one.  With ``credentials=(user, password)`` the client
picks the strongest mechanism the server offers (:data:`PREFERENCE`).
"""

from ._mechanisms import OAUTH_PREFERENCE as OAUTH_PREFERENCE
from ._mechanisms import PREFERENCE as PREFERENCE
from ._mechanisms import CramMd5 as CramMd5
from ._mechanisms import Login as Login
from ._mechanisms import Mechanism as Mechanism
from ._mechanisms import OAuthBearer as OAuthBearer
from ._mechanisms import Plain as Plain
from ._mechanisms import SaslError as SaslError
from ._mechanisms import ScramSha1 as ScramSha1
from ._mechanisms import ScramSha256 as ScramSha256
from ._mechanisms import XOAuth2 as XOAuth2
from ._mechanisms import choose_mechanism as choose_mechanism
from ._mechanisms import choose_oauth_mechanism as choose_oauth_mechanism
from ._mechanisms import decode_challenge as decode_challenge
from ._mechanisms import password_mechanisms as password_mechanisms
