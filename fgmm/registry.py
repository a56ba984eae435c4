"""A tiny name → factory registry, in the spirit of timm's ``register_model``.

Registries replace if-chains: encoders, fusion modules, GNN layers, noise filters and datasets
each have one, and ``create_*`` functions look names up in them.

Example::

    GNN_LAYERS = Registry("gnn layer")

    @GNN_LAYERS.register("gcn")
    class GCNPropagation(nn.Module): ...

    layer = GNN_LAYERS.create("gcn", in_dim=64, out_dim=64)

A registry whose entries live in modules that import the registry (so it cannot import them at
definition time) names them in ``populate``; they are imported on the first lookup::

    TASKS = Registry("task", populate="fgmm.tasks.all")
    TASKS.get("image")        # imports fgmm.tasks.all first: no need to import it yourself
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from fgmm.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) of one kind of component."""

    def __init__(self, kind: str, populate: str | None = None):
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}
        self._populate = populate

    def _populated(self) -> dict[str, Callable[..., T]]:
        """The entries, after importing the ``populate`` module once (on the first lookup)."""
        if self._populate is not None:
            module, self._populate = self._populate, None  # cleared first: the module registers into us
            try:
                importlib.import_module(module)
            except BaseException:
                self._populate = module
                raise
        return self._entries

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name`` (names are case-insensitive)."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            key = name.lower()
            if key in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[key] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        """Return the factory registered under ``name`` or raise a :class:`ConfigError` listing choices."""
        try:
            return self._populated()[name.lower()]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(sorted(self._entries))}"
            ) from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Instantiate the component registered under ``name``."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._populated())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._populated()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
