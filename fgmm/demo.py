"""``fgmm demo``: the embedded default, end to end on a fresh machine in a few minutes.

Generates the procedural fine-grained dataset (deterministic, seconds), encodes its images with a
frozen pretrained backbone through the feature cache, runs every registered evaluation task
(image only, knowledge graph, zero-shot, text fusion, retrieval, ...), prints one table and writes
a report folder (``results.json``, ``report.md`` and plots).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgmm.cache import FeatureCache
from fgmm.data.procedural import generate_procedural
from fgmm.errors import ConfigError
from fgmm.pipeline import build_context
from fgmm.report import (
    TABLE_ROWS,
    plot_confusion,
    plot_per_class_accuracy,
    plot_training_curve,
    write_json_atomic,
)
from fgmm.tasks import TASKS, run_tasks

DEMO_TASKS: tuple[str, ...] = ("image", "kg", "zsl", "text", "retrieval", "noise", "audio_default", "geo")
#: tasks that evaluate on classes without training images (they need ``unseen_classes >= 1``)
ZERO_SHOT_TASKS: tuple[str, ...] = ("zsl", "zsl_gnn")
#: per class: a training, a validation and a test image at least
MIN_IMAGES_PER_CLASS = 3


@dataclass
class DemoConfig:
    """Size and models of the demo run (defaults finish in well under 3 minutes on 2 CPU cores)."""

    out_dir: Path = Path("fgmm-demo")
    num_classes: int = 20
    images_per_class: int = 40
    unseen_classes: int = 5
    noise_rate: float = 0.2
    seed: int = 0
    vision: str = "efficientnet_lite0"
    image_size: int = 160
    tasks: tuple[str, ...] = DEMO_TASKS
    progress: bool = True

    def __post_init__(self) -> None:
        """Check everything before any work starts: each mistake is one :class:`ConfigError` line."""
        self.tasks = tuple(self.tasks)
        if not self.tasks:
            raise ConfigError(f"no task to run; choose from: {', '.join(TASKS.names())}")
        for name in self.tasks:
            TASKS.get(name)  # unknown task 'imag'; choose one of: ...
        if self.images_per_class < MIN_IMAGES_PER_CLASS:
            raise ConfigError(f"images per class must be at least {MIN_IMAGES_PER_CLASS} (a training, a "
                              f"validation and a test image per class), got {self.images_per_class}")
        if not 0 <= self.unseen_classes <= self.num_classes - 2:
            raise ConfigError(f"unseen classes must be in [0, {max(self.num_classes - 2, 0)}] for "
                              f"{self.num_classes} classes (at least 2 classes keep training images), "
                              f"got {self.unseen_classes}")
        zero_shot = [t for t in self.tasks if t in ZERO_SHOT_TASKS]
        if zero_shot and self.unseen_classes == 0:
            raise ConfigError(f"task(s) {', '.join(zero_shot)} need unseen classes: set unseen classes to 1 "
                              f"or more, or leave them out of the tasks")


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the demo; returns the results dict that is also written to ``out_dir/results.json``."""
    out = Path(config.out_dir)
    start = time.perf_counter()
    dataset = generate_procedural(out / "data", num_classes=config.num_classes,
                                  images_per_class=config.images_per_class,
                                  unseen_classes=config.unseen_classes, noise_rate=config.noise_rate,
                                  seed=config.seed, progress=config.progress)
    generated = time.perf_counter() - start
    ctx, stats = build_context(dataset, cache=FeatureCache(out / "cache"), vision=config.vision,
                               image_size=config.image_size, seed=config.seed, quick=True,
                               out_dir=out, progress=config.progress)
    tasks = list(config.tasks)
    metrics = _run_with_progress(ctx, tasks, config.progress)
    seconds = {"generate": round(generated, 3), "encode": stats["seconds"], **metrics.pop("seconds")}
    seconds["total"] = round(time.perf_counter() - start, 3)
    results = {
        "dataset": "procedural", "split": ctx.dataset.split_protocol,
        "n_train": len(ctx.indices("train")), "n_test": len(ctx.indices("test")),
        "num_classes": dataset.num_classes, "unseen_classes": ctx.unseen_classes,
        "noise_rate": config.noise_rate, **metrics, "seconds": seconds,
        "images_per_s": stats["images_per_s"], "encoder": stats["encoder"], "tasks": tasks,
    }
    write_json_atomic(out / "results.json", results)
    _write_report(ctx, results, out)
    return results


def _run_with_progress(ctx, tasks: list[str], show: bool) -> dict[str, Any]:
    """:func:`run_tasks`, one task at a time under a progress line (task name, count, elapsed time) on
    stderr, so that minutes of evaluation are never silent."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    metrics: dict[str, Any] = {"seconds": {}}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not show) as progress:
        bar = progress.add_task("evaluating", total=len(tasks))
        for name in tasks:
            progress.update(bar, description=f"task [bold]{name}[/]")
            part = run_tasks(ctx, [name])
            metrics["seconds"].update(part.pop("seconds"))
            metrics.update(part)
            progress.advance(bar)
        progress.update(bar, description="tasks done")
    return metrics


def _write_report(ctx, results: dict[str, Any], out: Path) -> None:
    """Plots from what the tasks left in ``ctx.shared`` and a markdown summary linking them."""
    names = ctx.dataset.class_names
    figures: list[tuple[str, str]] = []
    if "image_test_pred" in ctx.shared:
        y_true, y_pred = ctx.shared["image_test_true"], ctx.shared["image_test_pred"]
        plot_per_class_accuracy(y_true, y_pred, names, out / "per_class.png", "image only: per-class top-1")
        plot_confusion(y_true, y_pred, names, out / "confusion.png")
        figures += [("per-class top-1 (image only)", "per_class.png"), ("confusion matrix", "confusion.png")]
    if ctx.shared.get("training_history"):
        title, history = ctx.shared["training_history"]
        plot_training_curve(history, out / "training.png", title)
        figures.append((f"training curve ({title})", "training.png"))
    lines = ["# fgmm demo report", "",
             f"Procedural fine-grained dataset: {results['num_classes']} classes "
             f"({len(results['unseen_classes'])} unseen), {results['n_train']} train / "
             f"{results['n_test']} test samples, {100 * results['noise_rate']:.0f}% web-style label noise "
             f"on the training labels. Encoder: {results['encoder']} (frozen).", "",
             "| setting | key | value |", "|---|---|---|"]
    lines += [f"| {label} | `{key}` | {100 * float(results[key]):.1f}% |"
              for key, label in TABLE_ROWS if results.get(key) is not None]
    lines += ["", f"Wall time: {results['seconds']['total']:.1f} s "
                  f"({', '.join(f'{k} {v:.1f} s' for k, v in results['seconds'].items() if k != 'total')}).", ""]
    lines += [f"## {title}\n\n![{title}]({file})\n" for title, file in figures]
    (out / "report.md").write_text("\n".join(lines))
