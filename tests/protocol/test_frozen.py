"""The protocol core's value classes behave as the frozen dataclasses they replaced
(trio_smtp.protocol._frozen): equality, hashing, repr, frozenness, copy and pickle."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from trio_smtp.protocol import Bdat, Ehlo, Extensions, Mail, Quit, Rcpt, Reply, ReplyLimits
from trio_smtp.protocol._frozen import Frozen

MAIL = Mail("a@example.org", size=10, body="8BITMIME", envid="x", requiretls=True)
RCPT = Rcpt("b@example.org", notify=("FAILURE",), orcpt="b@example.org")


def test_fields_equality_and_repr_as_a_dataclass() -> None:
    assert Mail("a@example.org", 10, "8BITMIME", False, None, "x", True) == MAIL
    assert Mail("a@example.org", size=11, body="8BITMIME", envid="x", requiretls=True) != MAIL
    assert hash(RCPT) == hash(Rcpt("b@example.org", ("FAILURE",), "b@example.org"))
    assert Quit() == Quit() and hash(Quit()) == hash(Quit())
    assert Ehlo("x") != Quit() and Ehlo("x") != "EHLO x"
    assert repr(Rcpt("b@x")) == "Rcpt(recipient='b@x', notify=None, orcpt=None)"
    assert repr(Quit()) == "Quit()"
    assert Mail.__match_args__[:2] == ("sender", "size")


@pytest.mark.parametrize("value", [MAIL, RCPT])
def test_fast_key_overrides_cover_every_field(value: Frozen) -> None:
    # Mail and Rcpt write their comparison key by hand (speed): it must list every field.
    assert value._key() == tuple(getattr(value, name) for name in value._fields)
    for name in value._fields:
        assert value._replace(**{name: object()}) != value


def test_reply_command_takes_no_part_in_comparisons() -> None:
    assert Reply(250, ("ok",), None, Quit()) == Reply(250, ("ok",))
    assert hash(Reply(250, ("ok",), None, Quit())) == hash(Reply(250, ("ok",)))
    assert "command" not in repr(Reply(250, ("ok",), None, Quit()))


def test_extensions_hash_without_their_mapping() -> None:
    assert hash(Extensions()) == hash(Extensions(server_name=""))
    assert Extensions() == Extensions()


@pytest.mark.parametrize("value", [MAIL, RCPT, Quit(), Reply(250, ("ok",)), ReplyLimits()])
def test_frozen_copy_and_pickle(value: Frozen) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.anything = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        del value.anything  # type: ignore[attr-defined]
    assert copy.copy(value) == value
    assert copy.deepcopy(value) == value
    assert pickle.loads(pickle.dumps(value)) == value


def test_construction_still_validates() -> None:
    with pytest.raises(ValueError, match="bytes-like"):
        Bdat("text")  # type: ignore[arg-type]


def test_slots_must_match_the_annotated_fields() -> None:
    with pytest.raises(TypeError, match="__slots__"):

        class Broken(Frozen):
            __slots__ = ("a",)
            b: int


def test_a_subclass_without_slots_keeps_its_parents_fields() -> None:
    # As with a dataclass subclassed without @dataclass: same fields, same comparisons.
    class MyMail(Mail):
        note: str = "kept out of the fields"

    # mypy reads a subclass without its own __init__ as a new dataclass whose inherited
    # fields have no defaults (they are declared without values, for __slots__).
    mine = MyMail("a@example.org", size=1)  # type: ignore[call-arg]
    assert mine == MyMail("a@example.org", 1, None, False, None, None, False)
    assert mine != Mail("a@example.org", size=1)
    assert mine.to_bytes() == b"MAIL FROM:<a@example.org> SIZE=1\r\n"
