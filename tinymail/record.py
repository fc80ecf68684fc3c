"""Small value classes for sendmail's start-up path, in place of dataclasses and NamedTuple.

Importing `dataclasses` (it loads `inspect`) or `typing` costs several ms, and creating each
dataclass about 0.5 ms more: together more than a bare interpreter's whole start-up
(bench/sendmail_latency.py). A `Record` subclass declares __slots__ and an __init__ that sets
every slot; equality, hash and repr come from the slots, in their order. Instances are
treated as immutable.
"""


class Record:
    """Equality, hash and repr from __slots__ (the fields, in order)."""

    __slots__ = ()

    def _fields(self) -> tuple[object, ...]:
        names: tuple[str, ...] = self.__slots__
        return tuple(getattr(self, name) for name in names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__name__}({inner})"
