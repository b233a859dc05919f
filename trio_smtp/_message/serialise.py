"""An :class:`~email.message.EmailMessage` -> the bytes of its SMTP data, as the stdlib writes them.

Theory of operation: :func:`serialise` does what :meth:`smtplib.SMTP.send_message` does, with
public ``email`` APIs only: a shallow copy of the message loses its Bcc and Resent-Bcc fields
(the envelope carries those recipients, RFC 5322 §3.6.3; the header lines would disclose
them), and a :class:`~email.generator.BytesGenerator` flattens the copy with CRLF line ends
(RFC 5321 §2.3.8), under the message's own policy (a compat32 message is written under
:data:`email.policy.SMTP`, which can also write the UTF-8 headers of RFC 6532).

The copy is cheap and keeps the caller's message as it was: ``copy.copy`` shares the payload,
and ``Message.__delitem__`` builds a new header list instead of editing the shared one.  What
the generator itself changes while writing (it gives a multipart without a boundary one, as
``as_bytes`` does) happens on the copy's header list too.
"""

from __future__ import annotations

import copy
import email.policy
from email.generator import BytesGenerator
from email.message import Message
from io import BytesIO

__all__ = ["serialise"]


def serialise(message: Message, utf8: bool) -> bytes:
    """The message without Bcc/Resent-Bcc, with CRLF line ends; UTF-8 headers when ``utf8``.

    ``utf8`` is SMTPUTF8 (RFC 6531): without it, non-ASCII header text becomes encoded words
    (RFC 2047), as the policy's ``utf8=False`` writes it.
    """
    stripped = copy.copy(message)
    del stripped["Bcc"]
    del stripped["Resent-Bcc"]
    policy: email.policy.Policy
    if isinstance(message.policy, email.policy.EmailPolicy):
        policy = message.policy.clone(linesep="\r\n", utf8=utf8)
    else:  # compat32 cannot write UTF-8 headers: the SMTP policies can
        policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
    buffer = BytesIO()
    # No linesep=: the policy's is CRLF already (passing one would clone it again).
    BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(stripped)
    return buffer.getvalue()
