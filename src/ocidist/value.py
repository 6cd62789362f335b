"""Frozen value types without ``dataclasses``.

Every ``dist`` command starts a new interpreter, and on the small workloads
start-up is a third of the wall time. ``@dataclass`` costs ~1 ms per class at
import (it generates ``__init__``/``__eq__``/``__hash__``/``__repr__`` source
and ``exec``s it) and importing ``dataclasses`` pulls in ``inspect``, ``ast``
and ``dis`` (~5 ms). The value types on the fetch path derive from ``Value``
instead: ``__slots__`` name the fields (in ``__init__``'s positional order),
and equality, hashing, ``repr`` and ``replace`` read them generically.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

V = TypeVar("V", bound="Value")


class Value:
    """Base of immutable value types: subclasses set ``__slots__`` (the fields,
    in constructor order) and write an ``__init__`` that assigns each through
    ``object.__setattr__``. ``_eq``/``_hash`` name fields left out of
    comparison or hashing (e.g. annotations, which are dicts)."""

    __slots__ = ()
    _no_eq: ClassVar[tuple[str, ...]] = ()
    _no_hash: ClassVar[tuple[str, ...]] = ()
    _names: ClassVar[tuple[str, ...]] = ()
    _eq_fields: ClassVar[tuple[str, ...]] = ()
    _hash_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._names = tuple(cls.__dict__.get("__slots__", ()))
        cls._eq_fields = tuple(f for f in cls._names if f not in cls._no_eq)
        cls._hash_fields = tuple(f for f in cls._eq_fields if f not in cls._no_hash)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot delete {name!r})")

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._names)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._eq_fields)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in self._hash_fields))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._names)
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling and copy: rebuild through __init__ (slots + the frozen
        # __setattr__ defeat the default state restore).
        return (type(self), self._fields())

    def replace(self: V, **changes: Any) -> V:
        """A copy with ``changes`` applied (what ``dataclasses.replace`` did)."""
        values = {f: getattr(self, f) for f in self._names}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        values.update(changes)
        return type(self)(**values)
