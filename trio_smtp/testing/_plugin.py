"""pytest plugin: fixtures for :mod:`trio_smtp.testing` (registered via ``pytest11``)."""
