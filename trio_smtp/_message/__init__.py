"""The message layer: a message made ready for the wire (envelope, serialised body, DSN
options, DKIM signature) before any connection is involved; imports only ``protocol``,
``_errors`` and ``_config``."""
