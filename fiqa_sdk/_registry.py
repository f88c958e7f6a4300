"""Name -> factory registries for detectors, embedders and scorers (timm/pyiqa style)."""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from .errors import UnknownBackendError

T = TypeVar("T")


class Registry(Generic[T]):
    """A small registry: ``register`` a factory under a name, ``create`` by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, doc: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            self._docs[name] = doc or (factory.__doc__ or "").strip().split("\n")[0]
            return factory

        return deco

    def names(self) -> list[str]:
        return sorted(self._factories)

    def describe(self) -> dict[str, str]:
        return {n: self._docs[n] for n in self.names()}

    def create(self, name: str, /, **kwargs: Any) -> T:
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string, got {type(name).__name__}")
        try:
            factory = self._factories[name]
        except KeyError:
            raise UnknownBackendError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None
        return factory(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
