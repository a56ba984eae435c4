"""``fgmm data audit``: suspected label issues, duplicates and leakage across splits, corrupt files.

Mounted on the ``data`` sub-app by :mod:`fgmm.cli.main`; the work is :func:`fgmm.filters.audit.audit_dataset`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from fgmm.cli._common import CACHE_HELP, DEFAULT_VISION, console, friendly_errors, names_of


def _filters() -> list[str]:
    from fgmm.filters import FILTERS

    return FILTERS.names()

AUDIT_EXAMPLES = ("Examples:\n\n  fgmm data audit data/cub200 --out cub-audit\n\n"
                  "  fgmm data audit crawled/ --out crawl-audit --filter confident --top 96\n\n"
                  "  fgmm data audit photos/ --out photo-audit --no-labels   (files and duplicates only)")


@friendly_errors
def audit(
    root: Path = typer.Argument(..., help="dataset root (CUB-200-2011 layout or fgmm folder format); only read"),
    out: Path = typer.Option(Path("fgmm-audit"), "--out", "-o", help="output folder (outside the dataset)"),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="look for label issues (encodes the images)"),
    filter: str = typer.Option("crossmodal", "--filter", help="noisy-label filter (fgmm.filters.FILTERS)",
                               callback=names_of("noise filter", _filters)),
    vision: str = typer.Option(DEFAULT_VISION, help="vision encoder for the label check (any timm name)"),
    image_size: int | None = typer.Option(None, help="encoder input size (default: the encoder's own)"),
    cache: Path | None = typer.Option(None, help=CACHE_HELP),
    texts: bool = typer.Option(True, "--texts/--no-texts", help="use the samples' texts as a second witness"),
    max_distance: int = typer.Option(8, min=0, max=32, help="perceptual-hash bits (of 64) for near duplicates"),
    top: int = typer.Option(48, min=1, help="suspects shown on the contact sheet"),
    force: bool = typer.Option(False, "--force", help="add the audit to a non-empty folder fgmm did not create "
                                                      "(nothing already there is overwritten)"),
) -> None:
    """Find labels to fix, duplicate and leaking images, and corrupt files; write CSVs and contact sheets.

    The dataset folder is only read: nothing in it is moved, deleted or rewritten.
    """
    from fgmm.filters import FILTERS
    from fgmm.filters.audit import AuditConfig, audit_dataset

    FILTERS.get(filter)  # an unknown name fails before any work
    config = AuditConfig(labels=labels, filter=filter, vision=vision, image_size=image_size, cache_dir=cache,
                         texts=texts, max_distance=max_distance, top=top, force=force)
    report = audit_dataset(root, out, config)
    console.print(report.format(), highlight=False)
