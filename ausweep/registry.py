"""A small registry of named components with lazy ``"module:attr"`` entries.

Every pluggable part (text models, audio encoders, data sources, studies) is named through a
registry, so YAML files say ``text.model: gpt2`` rather than an import path, heavy backends are
imported only when used, and ``python -m ausweep ls`` can list what exists. An unknown name
raises :class:`UnknownNameError`, which lists the known names.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registry entry has. ``str()`` is one readable line."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown {kind} '{name}'{hint} (known: {', '.join(known)})")

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return self.args[0]

    def __reduce__(self):  # survive pickling across Ray processes
        return type(self), (self.kind, self.name, self.known)


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    target: Any  # the object itself, or "module:attr" resolved on first use
    help: str = ""

    def load(self) -> T:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
            return obj
        return self.target


class Registry(Generic[T]):
    """``REG.register("name", "pkg.mod:obj", help=...)``; ``REG.get("name")`` loads it."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, target: Any = None, help: str = "") -> Any:
        """Register ``target`` under ``name``; with no target, works as a decorator."""
        if target is None:
            def deco(obj: Any) -> Any:
                self.register(name, obj, help=help)
                return obj
            return deco
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = Entry(name, target, help)
        return target

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def describe(self) -> list[tuple[str, str]]:
        return [(e.name, e.help) for _, e in sorted(self._entries.items())]
