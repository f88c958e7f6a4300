"""Name -> factory registries for detectors, embedders and scorers (timm/pyiqa style)."""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from .errors import InvalidArgumentError, InvalidTypeError, UnknownBackendError

T = TypeVar("T")


class Registry(Generic[T]):
    """A small registry: ``register`` a factory under a name, ``create`` by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._docs: dict[str, str] = {}
        self._cards: dict[str, dict[str, Any]] = {}

    def register(self, name: str, doc: str = "", **card: Any
                 ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register a factory under ``name``; ``card``: what the entry declares about itself
        (e.g. ``precisions=("auto", "fp32", "int8")``), read back with :meth:`card`."""
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise InvalidArgumentError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            self._docs[name] = doc or (factory.__doc__ or "").strip().split("\n")[0]
            self._cards[name] = dict(card)
            return factory

        return deco

    def card(self, name: str) -> dict[str, Any]:
        """What entry ``name`` declared when it was registered (a copy; empty if nothing)."""
        self._factory(name)
        return dict(self._cards.get(name, {}))

    def cards(self) -> dict[str, dict[str, Any]]:
        """Every entry's card with its one-line description under ``"doc"`` (what ``fiqa list``
        prints)."""
        return {n: {"doc": self._docs[n], **self._cards.get(n, {})} for n in self.names()}

    def registered(self) -> list[str]:
        """Names in registration order."""
        return list(self._factories)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def describe(self) -> dict[str, str]:
        return {n: self._docs[n] for n in self.names()}

    def _factory(self, name: str) -> Callable[..., T]:
        if not isinstance(name, str):
            raise InvalidTypeError(f"{self.kind} name must be a string, got {type(name).__name__}")
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownBackendError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, /, **kwargs: Any) -> T:
        return self._factory(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
