"""One convention across commands (fgmm/cli/_common.py): ``--json`` is a flag printing JSON to stdout, outputs
are ``--out/-o``, what a command works on is positional, one default vision model and one default cache,
values outside a fixed set refused with the valid ones listed, and documented exit codes (2 usage, 3 fgmm
error). The structural checks walk every command, so a new command that breaks the convention fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from fgmm.cli._common import CACHE_HELP, DEFAULT_VISION, EXIT_ERROR, EXIT_PROBLEMS, EXIT_USAGE
from fgmm.cli.main import app

runner = CliRunner(env={"COLUMNS": "250"})  # wide: rich wraps usage errors in a box
#: commands allowed another default vision encoder, and why
VISION_EXCEPTIONS = {"fgmm demo": "the demo's fast EfficientNet-Lite0, to stay within its few minutes"}


def _commands(command=None, path=("fgmm",)):
    command = command or typer.main.get_command(app)
    if getattr(command, "commands", None):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), command


COMMANDS = dict(_commands())


def _options(command):
    return [p for p in command.params if p.param_type_name == "option"]


def test_conventions_hold_for_every_command():
    problems = []
    for name, command in COMMANDS.items():
        for option in _options(command):
            opts = set(option.opts) | set(option.secondary_opts)
            if "--json" in opts and not option.is_flag:
                problems.append(f"{name}: --json must be a flag printing JSON to stdout (write files with --out/-o)")
            if "--out" in opts and "-o" not in opts:
                problems.append(f"{name}: --out needs the short form -o")
            if "--cache" in opts and option.help != CACHE_HELP:
                problems.append(f"{name}: --cache must default to the one feature cache (help: {CACHE_HELP!r})")
            if "--vision" in opts and option.default not in (None, DEFAULT_VISION) and name not in VISION_EXCEPTIONS:
                problems.append(f"{name}: --vision defaults to {option.default!r}, not {DEFAULT_VISION!r}")
        for argument in (p for p in command.params if p.param_type_name == "argument"):
            if argument.name == "out":
                problems.append(f"{name}: an output path is --out/-o, not a positional argument")
        if any(p.name == "index" and p.param_type_name == "option" for p in command.params):
            problems.append(f"{name}: the index is the positional argument INDEX")
    assert not problems, "\n".join(problems)
    assert [p.name for p in COMMANDS["fgmm retrieve"].params][0] == "index"


def test_exit_codes_separate_usage_from_fgmm_errors(tmp_path):
    missing_argument = runner.invoke(app, ["kg", "stats"])
    assert missing_argument.exit_code == EXIT_USAGE
    bad_choice = runner.invoke(app, ["kg", "query", str(tmp_path / "g.ttl"), "ASK {}", "--format", "xml"])
    assert bad_choice.exit_code == EXIT_USAGE and "'table', 'csv', 'json'" in bad_choice.output
    combined = runner.invoke(app, ["retrieve", str(tmp_path), "--text", "a", "--image", "b.jpg"])
    assert combined.exit_code == EXIT_USAGE and "exactly one of --text" in combined.output
    bad_file = runner.invoke(app, ["kg", "stats", str(tmp_path / "missing.ttl")])
    assert bad_file.exit_code == EXIT_ERROR and bad_file.output.startswith("error:")
    assert "Traceback" not in bad_file.output and len(bad_file.output.strip().splitlines()) == 1


def test_registry_values_are_refused_with_the_valid_ones(tmp_path):
    (tmp_path / "t.txt").write_text("a bird\n")
    backend = runner.invoke(app, ["index", "build", "--texts", str(tmp_path / "t.txt"), "-o", str(tmp_path / "i"),
                                  "--backend", "annoy"])
    assert backend.exit_code == EXIT_USAGE and "choose one of: faiss, torch" in backend.output
    rerank = runner.invoke(app, ["retrieve", str(tmp_path), "--text", "x", "--rerank", "magic"])
    assert rerank.exit_code == EXIT_USAGE and "choose one of:" in rerank.output and "kreciprocal" in rerank.output
    assert not (tmp_path / "i").exists()


def _photos(folder: Path) -> Path:
    for c, colour in enumerate(((200, 30, 30), (30, 30, 200))):
        (folder / f"class{c}").mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (40, 40), tuple(v + 20 * k for v in colour)).save(folder / f"class{c}" / f"{k}.jpg")
    return folder


def test_json_is_plain_json_on_stdout(tmp_path, tiny_cub):
    photos = _photos(tmp_path / "photos")
    cache = ["--cache", str(tmp_path / "cache")]
    built = runner.invoke(app, ["index", "build", "--images", str(photos), "-o", str(tmp_path / "idx"),
                                "--vision", "efficientnet_lite0", "--image-size", "32", *cache])
    assert built.exit_code == 0, built.output
    assert "encoding images" in built.stderr  # index build shows progress (on stderr)

    info = json.loads(runner.invoke(app, ["index", "info", str(tmp_path / "idx"), "--json"]).stdout)
    assert info["items"] == 4 and info["modality"] == "image" and info["classes"] == 2
    hits = runner.invoke(app, ["retrieve", str(tmp_path / "idx"), "--image", str(photos / "class0" / "0.jpg"),
                               "-k", "2", "--json", "--grid", str(tmp_path / "grid.png"), *cache])
    assert hits.exit_code == 0, hits.output
    assert json.loads(hits.stdout)["results"][0]["class"] == "class0"  # the grid note went to stderr
    namespaces = json.loads(runner.invoke(app, ["cache", "info", "--json", *cache]).stdout)["namespaces"]
    assert namespaces and namespaces[0]["entries"] >= 4

    check = runner.invoke(app, ["data", "check", str(tiny_cub), "--shallow", "--json"])
    assert check.exit_code == 0 and json.loads(check.stdout)["num_classes"] == 3

    graph = tmp_path / "g.ttl"
    assert runner.invoke(app, ["kg", "new", str(graph)]).exit_code == 0
    runner.invoke(app, ["kg", "add-class", str(graph), "Gull"])
    valid = runner.invoke(app, ["kg", "validate", str(graph), "--json"])
    assert valid.exit_code in (0, EXIT_PROBLEMS) and json.loads(valid.stdout)["conforms"] == (valid.exit_code == 0)


@pytest.mark.parametrize("old_and_new", [
    (["kg", "export", "{g}", "{tmp}/a.nt"], ["kg", "export", "{g}", "-o", "{tmp}/b.nt"]),
])
def test_outputs_take_out_and_the_older_positional_form(tmp_path, old_and_new):
    graph = tmp_path / "g.ttl"
    runner.invoke(app, ["kg", "new", str(graph)])
    for args in old_and_new:
        result = runner.invoke(app, [a.format(g=graph, tmp=tmp_path) for a in args])
        assert result.exit_code == 0, result.output
    twice = runner.invoke(app, ["kg", "export", str(graph), str(tmp_path / "c.nt"), "-o", str(tmp_path / "d.nt")])
    assert twice.exit_code == EXIT_USAGE and "given twice" in twice.output
