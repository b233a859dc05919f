"""The client layer: :class:`~trio_smtp.SmtpClient`, :class:`~trio_smtp.SmtpPool` and
:func:`~trio_smtp.send`, which turn the user's settings into session configs and drive
:mod:`trio_smtp._delivery` over leased connection slots."""
