"""Files that ship inside the package, read with :mod:`importlib.resources`.

They live at the top of the repository, where people look for them, and are installed as packages
(``setup.py`` maps the folders), so the same call works in a checkout, an editable install, a wheel
or an sdist install:

* ``knowledge/`` → ``fgmm.knowledge``: the vocabulary ``fgmm.ttl``, the SHACL ``shapes.ttl``,
  ``cub_taxonomy.ttl``, ``procedural.ttl`` and the modelling notes ``README.md``;
* ``examples/configs/`` → ``fgmm.configs``: example experiment configs (``cub_image.yaml``, ...).

Example::

    from fgmm.resources import example_config, knowledge_file
    shapes = knowledge_file("shapes.ttl")           # a real file path (pyshacl and rdflib read paths)
    print(example_config("cub_image").read_text())   # copy it, edit it, `fgmm train -c my.yaml`
"""

from __future__ import annotations

from contextlib import ExitStack
from importlib import resources
from pathlib import Path

from fgmm.errors import ConfigError

KNOWLEDGE_PACKAGE = "fgmm.knowledge"
CONFIGS_PACKAGE = "fgmm.configs"

#: keeps the extracted copies alive when the package is imported from a zip file (never in a normal install)
_EXTRACTED = ExitStack()


def _shipped(package: str, name: str, what: str, choices: list[str]) -> Path:
    entry = resources.files(package).joinpath(name)
    if not entry.is_file():
        raise ConfigError(f"no shipped {what} '{name}'; choose one of: {', '.join(choices)}")
    if isinstance(entry, Path):
        return entry
    return _EXTRACTED.enter_context(resources.as_file(entry))


def _names(package: str, suffixes: tuple[str, ...]) -> list[str]:
    return sorted(e.name for e in resources.files(package).iterdir() if e.is_file() and e.name.endswith(suffixes))


def knowledge_files() -> list[str]:
    """Names of the shipped knowledge files (Turtle files and the modelling notes)."""
    return _names(KNOWLEDGE_PACKAGE, (".ttl", ".md"))


def knowledge_file(name: str) -> Path:
    """Path of a shipped knowledge file (``fgmm.ttl``, ``shapes.ttl``, ``cub_taxonomy.ttl``, ...).

    Raises:
        ConfigError: no such shipped file (the message lists the shipped ones).
    """
    return _shipped(KNOWLEDGE_PACKAGE, name, "knowledge file", knowledge_files())


def example_configs() -> list[str]:
    """Names (without ``.yaml``) of the shipped example experiment configs."""
    return [name.removesuffix(".yaml") for name in _names(CONFIGS_PACKAGE, (".yaml",))]


def example_config(name: str) -> Path:
    """Path of a shipped example config, by name (``"cub_image"``) or file name (``"cub_image.yaml"``).

    Raises:
        ConfigError: no such example (the message lists the shipped ones).
    """
    file = name if name.endswith(".yaml") else f"{name}.yaml"
    return _shipped(CONFIGS_PACKAGE, file, "example config", example_configs())
