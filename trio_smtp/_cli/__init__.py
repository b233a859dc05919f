"""The ``trio-smtp`` command line (send, bulk, probe, serve, demo), on top of the public API."""
