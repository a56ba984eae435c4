"""Fuzz the command line's numeric options with bad values: always one clear line, never a traceback,
never a half-written output folder (issue 8, items 5 and 9).

Every case must fail before any heavy work (data loading, encoding), so the whole file runs in seconds.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fgmm.cli.main import app

runner = CliRunner()

NOT_A_NUMBER = ["abc", ""]
BAD_INTS = ["0", "-1", "-5", "1e309", *NOT_A_NUMBER]
BAD_FLOATS = ["nan", "inf", "-inf", "-1", *NOT_A_NUMBER]

# (command before the option, option, values that must be refused)
CASES = [
    (["train", "--data", "{tmp}", "--out", "{tmp}/run"], "--epochs", BAD_INTS),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run"], "--lr", [*BAD_FLOATS, "0"]),
    (["cache", "build", "{tmp}", "--cache", "{tmp}/run"], "--image-size", BAD_INTS),
    (["cache", "build", "{tmp}", "--cache", "{tmp}/run"], "--batch-size", BAD_INTS),
    (["data", "generate", "{tmp}/run"], "--classes", ["1", *BAD_INTS]),
    (["data", "generate", "{tmp}/run"], "--images", ["1", *BAD_INTS]),
    (["data", "generate", "{tmp}/run"], "--unseen", ["-1", "20", *NOT_A_NUMBER]),
    (["data", "generate", "{tmp}/run"], "--noise", [*BAD_FLOATS, "1", "1.5"]),
    (["data", "generate", "{tmp}/run"], "--seed", ["-1", *NOT_A_NUMBER]),
    (["demo", "--out", "{tmp}/run"], "--classes", ["0", "-3", *NOT_A_NUMBER]),
    (["demo", "--out", "{tmp}/run"], "--images", ["1", "-1"]),
    (["demo", "--out", "{tmp}/run"], "--noise", ["nan", "-0.5", "1"]),
    (["demo", "--out", "{tmp}/run"], "--image-size", ["0", "-64", *NOT_A_NUMBER]),
    (["retrieve", "--index", "{tmp}/run", "--text", "x"], "-k", ["0", "-1", *NOT_A_NUMBER]),
    (["index", "build", "--texts", "{tmp}/t.txt", "--out", "{tmp}/run"], "--image-size", ["0", "-1"]),
    (["kg", "show", "{tmp}/g.ttl", "C", "--out", "{tmp}/run.png"], "--top-k", ["0", "-1", *NOT_A_NUMBER]),
    (["kg", "import-cub", "{tmp}", "--out", "{tmp}/run.nt"], "--threshold", ["nan", "-1", "2", *NOT_A_NUMBER]),
]


@pytest.mark.parametrize(("command", "option", "value"),
                         [(c, o, v) for c, o, values in CASES for v in values],
                         ids=lambda x: " ".join(x[:2]) if isinstance(x, list) else repr(x))
def test_bad_numbers_are_refused_in_one_line(tmp_path, command, option, value):
    args = [part.replace("{tmp}", str(tmp_path)) for part in command] + [option, value]
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert result.exit_code in (2, 3), (args, result.output)  # refused by the option parser or by fgmm
    assert "Traceback" not in result.output
    assert "error" in result.output.lower() or "invalid value" in result.output.lower(), result.output
    assert not any(p.name.startswith("run") for p in tmp_path.iterdir()), (args, list(tmp_path.iterdir()))
