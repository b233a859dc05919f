"""The sans-IO SMTP client core: no I/O, no Trio (a test enforces that).

Feed it bytes, get events; give it commands, get bytes.  See :class:`ClientConnection`.
"""

from ._commands import Auth as Auth
from ._commands import AuthResponse as AuthResponse
from ._commands import Bdat as Bdat
from ._commands import Command as Command
from ._commands import Data as Data
from ._commands import Ehlo as Ehlo
from ._commands import EndOfData as EndOfData
from ._commands import Helo as Helo
from ._commands import Mail as Mail
from ._commands import Noop as Noop
from ._commands import Quit as Quit
from ._commands import Rcpt as Rcpt
from ._commands import Rset as Rset
from ._commands import StartTls as StartTls
from ._commands import Vrfy as Vrfy
from ._commands import validate_address as validate_address
from ._commands import validate_domain as validate_domain
from ._commands import xtext_encode as xtext_encode
from ._connection import NEED_DATA as NEED_DATA
from ._connection import ClientConnection as ClientConnection
from ._connection import ConnectionClosed as ConnectionClosed
from ._connection import NeedData as NeedData
from ._data import BodyInspector as BodyInspector
from ._data import BodyKind as BodyKind
from ._data import DataEncoder as DataEncoder
from ._data import LineEndingNormalizer as LineEndingNormalizer
from ._data import encode_data as encode_data
from ._data import normalize_line_endings as normalize_line_endings
from ._errors import LocalProtocolError as LocalProtocolError
from ._errors import ProtocolError as ProtocolError
from ._errors import RemoteProtocolError as RemoteProtocolError
from ._extensions import Extensions as Extensions
from ._replies import ReceiveBuffer as ReceiveBuffer
from ._replies import Reply as Reply
from ._replies import ReplyLimits as ReplyLimits
from ._replies import ReplyParser as ReplyParser
from ._state import EVENTS as EVENTS
from ._state import TRANSITIONS as TRANSITIONS
from ._state import Event as Event
from ._state import Outcome as Outcome
from ._state import Replied as Replied
from ._state import Sent as Sent
from ._state import Signal as Signal
from ._state import State as State
from ._state import Step as Step
