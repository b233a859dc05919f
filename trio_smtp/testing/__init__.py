"""An in-process SMTP server for protocol-level tests.

:class:`SmtpServer` speaks SMTP over Trio on loopback TCP (or on any ``trio.abc.Stream``):
EHLO/HELO, STARTTLS and implicit TLS (certificates made on the fly with trustme), AUTH
PLAIN/LOGIN/CRAM-MD5/XOAUTH2/SCRAM-SHA-256 (and, when asked for through ``auth_mechanisms``,
SCRAM-SHA-1 and OAUTHBEARER: see :data:`ALL_MECHANISMS`), PIPELINING, SIZE, 8BITMIME,
SMTPUTF8, DSN, CHUNKING/BDAT, ENHANCEDSTATUSCODES.  It records every command and message,
lets a test wait for the n-th message, and misbehaves on request (:meth:`SmtpServer.on` with
the actions below).  The server's side of the SMTP grammar (:func:`parse_command_line`,
:func:`parse_path_and_params`, :func:`xtext_decode`, :func:`decode_data`,
:func:`format_reply`) reads back what :mod:`trio_smtp.protocol` writes.

The pytest plugin (registered through the ``pytest11`` entry point) provides the ``smtp_server`` and
``smtp_client_factory`` fixtures.  See the how-to "Testing code that sends mail".
"""

from ._config import ALL_MECHANISMS as ALL_MECHANISMS
from ._config import DEFAULT_MECHANISMS as DEFAULT_MECHANISMS
from ._config import TlsMode as TlsMode
from ._faults import Action as Action
from ._faults import Delay as Delay
from ._faults import Drip as Drip
from ._faults import EarlyReply as EarlyReply
from ._faults import Fault as Fault
from ._faults import FaultNotFiredError as FaultNotFiredError
from ._faults import Handover as Handover
from ._faults import Hangup as Hangup
from ._faults import Inject as Inject
from ._faults import Respond as Respond
from ._faults import Shutdown as Shutdown
from ._grammar import CommandSyntaxError as CommandSyntaxError
from ._grammar import decode_data as decode_data
from ._grammar import format_reply as format_reply
from ._grammar import parse_command_line as parse_command_line
from ._grammar import parse_path_and_params as parse_path_and_params
from ._grammar import xtext_decode as xtext_decode
from ._records import CommandRecord as CommandRecord
from ._records import ConnectionRecord as ConnectionRecord
from ._records import Message as Message
from ._records import ServerReply as ServerReply
from ._records import ServerStatistics as ServerStatistics
from ._server import ServerCrashError as ServerCrashError
from ._server import SmtpServer as SmtpServer

__all__ = [
    "ALL_MECHANISMS",
    "DEFAULT_MECHANISMS",
    "Action",
    "CommandRecord",
    "CommandSyntaxError",
    "ConnectionRecord",
    "Delay",
    "Drip",
    "EarlyReply",
    "Fault",
    "FaultNotFiredError",
    "Handover",
    "Hangup",
    "Inject",
    "Message",
    "Respond",
    "ServerCrashError",
    "ServerReply",
    "ServerStatistics",
    "Shutdown",
    "SmtpServer",
    "TlsMode",
    "decode_data",
    "format_reply",
    "parse_command_line",
    "parse_path_and_params",
    "xtext_decode",
]
