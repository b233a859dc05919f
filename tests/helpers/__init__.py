"""Helpers shared by test modules, imported by name (``from helpers.streams import
CountingStream``): tests/ is on ``sys.path`` because conftest.py lives there.  Fixtures stay in
conftest.py; anything a test imports lives here."""
