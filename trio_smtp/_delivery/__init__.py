"""The delivery layer: one session (greeting, EHLO, STARTTLS, AUTH), the transaction engine
(MAIL/RCPT/DATA or BDAT and its outcome), batch scheduling and the pickup directory, driven
over an :mod:`trio_smtp._io` transport."""
