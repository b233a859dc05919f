"""An in-process SMTP server for protocol-level tests (issue 3)."""
