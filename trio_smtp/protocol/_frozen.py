"""Frozen value objects without ``@dataclass``: the protocol core's commands and replies.

Why not dataclasses: ``@dataclass(frozen=True, slots=True)`` writes each class's methods as
source text and compiles it when the module is imported (about 0.45 ms a class, the class
built twice for ``slots``); the core's 19 classes were a third of what ``import trio_smtp``
cost.  Here each class lists its fields in ``__slots__`` and writes its own ``__init__``
(compiled once into the ``.pyc``, and as fast as the generated one on the send path);
:class:`Frozen` adds what ``@dataclass(frozen=True)`` added: a repr, equality and hashing
over the fields' values (C-level :func:`operator.attrgetter`, no Python loop: MAIL and RCPT
are hashed for every message, see ``_connection._encoded``), :pep:`634` ``__match_args__``,
``copy``/``pickle`` support, and :class:`dataclasses.FrozenInstanceError` on assignment.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from typing_extensions import Self, dataclass_transform
else:  # typing has it from 3.11 (without frozen_default before 3.12); nothing to do at run time

    def dataclass_transform(**_kwargs: object) -> Callable[[type], type]:
        return lambda cls: cls


__all__ = ["Frozen", "set_field"]

#: What an ``__init__`` uses to fill in a field (the class's own ``__setattr__`` refuses).
set_field = object.__setattr__


def _getter(names: tuple[str, ...]) -> attrgetter[Any]:
    """The fields' values, for equality and hashing.  ``attrgetter`` of one name returns
    the bare value, so it is given the name twice (tuple semantics, as a dataclass's);
    with no fields, the class stands in (instances of one class are then all equal)."""
    if not names:
        return attrgetter("__class__")
    return attrgetter(*names) if len(names) > 1 else attrgetter(names[0], names[0])


# For type checkers, subclasses are frozen dataclasses (assigning a field is an error).
@dataclass_transform(frozen_default=True)
class Frozen:
    """Base class: subclasses annotate their fields (in ``__init__`` order, as for a
    dataclass), list them in ``__slots__``, and store each in ``__init__`` with
    :func:`set_field`.  ``_not_compared`` names fields left out of equality, hashing and
    the repr; ``_not_hashed`` fields left out of hashing only (unhashable values)."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _not_compared: ClassVar[frozenset[str]] = frozenset()
    _not_hashed: ClassVar[frozenset[str]] = frozenset()
    _compared: ClassVar[attrgetter[Any]] = attrgetter("__class__")
    _hashed: ClassVar[attrgetter[Any]] = attrgetter("__class__")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__slots__" not in cls.__dict__:
            return  # a user's subclass without slots: the fields are its parent's
        # With ``from __future__ import annotations`` every annotation is a string.
        own = [
            name
            for name, annotation in inspect.get_annotations(cls).items()
            if not str(annotation).startswith(("ClassVar", "typing.ClassVar"))
        ]
        if set(own) != set(cls.__dict__["__slots__"]):
            raise TypeError(f"{cls.__qualname__}: __slots__ must list the annotated fields")
        fields = (*cls._fields, *own)
        compared = tuple(name for name in fields if name not in cls._not_compared)
        cls._fields = fields
        setattr(cls, "__match_args__", fields)  # noqa: B010 (undeclared: mypy derives its own)
        cls._compared = _getter(compared)
        cls._hashed = _getter(tuple(name for name in compared if name not in cls._not_hashed))

    def _key(self) -> object:
        """The values equality compares.  A class on the send path overrides this (and
        :meth:`_hash_key`) with a tuple display: Python's specialised slot loads are about
        3x faster than ``attrgetter``'s generic ones (tests/protocol/test_frozen.py checks
        that each override still covers every field)."""
        return self._compared(self)

    def _hash_key(self) -> object:
        """The values hashing covers."""
        return self._hashed(self)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(self._key() == other._key())

    def __hash__(self) -> int:
        return hash(self._hash_key())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self._fields
            if name not in self._not_compared
        )
        return f"{self.__class__.__qualname__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (as :func:`dataclasses.replace`, or a named
        tuple's ``_replace``); validated again by ``__init__``."""
        values = {name: getattr(self, name) for name in self._fields}
        values.update(changes)
        return self.__class__(**values)

    def __reduce__(self) -> tuple[type[Frozen], tuple[Any, ...]]:
        # copy.copy / pickle: the default would set the slots with setattr (refused).
        return self.__class__, tuple(getattr(self, name) for name in self._fields)
