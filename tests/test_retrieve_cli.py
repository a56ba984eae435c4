"""``fgmm index build`` / ``fgmm index info`` / ``fgmm retrieve`` on tiny indexes built in tmp_path."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from fgmm.cli.retrieve import RETRIEVE_EXAMPLES, index_app, retrieve

app = typer.Typer()
app.add_typer(index_app, name="index")
app.command("retrieve", epilog=RETRIEVE_EXAMPLES)(retrieve)
runner = CliRunner()

VISION = ["--vision", "efficientnet_lite0"]
CAPTIONS = ["a small bird with a red crown", "a large grey seabird with long narrow wings",
            "this bird has a yellow breast and black wings"]


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two images per colour class in subfolders."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200)), ("green", (30, 180, 30))):
        (root / name).mkdir()
        for i in range(2):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}{i}.jpg")
    return root


@pytest.fixture(scope="module")
def text_index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    (folder / "captions.txt").write_text("\n".join(CAPTIONS) + "\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        result = invoke("index", "build", "--texts", folder / "captions.txt", "--out", folder / "index")
    assert result.exit_code == 0, result.output
    assert "indexed 3 text items (384-d" in result.output
    return folder / "index"


def test_text_query_on_a_text_index(text_index, tmp_path):
    result = invoke("retrieve", "--index", text_index, "--text", "red-crowned little bird", "-k", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert [r["text"] for r in payload["results"]][0] == CAPTIONS[0]
    assert payload["results"][0]["id"] == "captions.txt:1" and len(payload["results"]) == 2
    assert payload["results"][0]["score"] > payload["results"][1]["score"]
    result = invoke("retrieve", "--index", text_index, "--text", "seabird", "--grid", tmp_path / "grid.png")
    assert result.exit_code == 0 and (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert "large grey seabird" in result.output


def test_image_index_and_image_query(photos, tmp_path):
    result = invoke("index", "build", "--images", photos, "--out", tmp_path / "index", *VISION)
    assert result.exit_code == 0, result.output
    assert "indexed 6 image items (1280-d" in result.output
    info = invoke("index", "info", tmp_path / "index")
    assert "efficientnet_lite0" in info.output and re.search(r"joint model\s+│ no", info.output)
    query = photos / "blue" / "blue1.jpg"
    result = invoke("retrieve", "--index", tmp_path / "index", "--image", query, "-k", "3", "--json",
                    "--grid", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output[: result.output.rindex("}") + 1])["results"]
    assert rows[0]["id"] == "blue/blue1.jpg" and rows[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert rows[0]["class"] == "blue" and rows[1]["class"] == "blue"  # the other blue photo comes next
    assert (tmp_path / "grid.png").is_file()
    # an image index without a model cannot answer a sentence
    result = invoke("retrieve", "--index", tmp_path / "index", "--text", "a blue bird")
    assert result.exit_code == 3 and "can only be queried with image" in result.output


def test_model_index_answers_sentences(photos, tmp_path):
    from fgmm.space import create_model

    model = create_model("image-text", classes=["blue", "green", "red"], dim=32,
                         modalities={"image": {"encoder": "efficientnet_lite0", "encoder_options": {"image_size": 64},
                                               "projection": "linear"}, "text": {"projection": "linear"}})
    model.class_source.trained.fill_(True)  # as if fitted: the model names its three classes
    model.save_pretrained(tmp_path / "model")
    result = invoke("index", "build", "--images", photos, "--model", tmp_path / "model",
                    "--out", tmp_path / "index")
    assert result.exit_code == 0, result.output
    assert "32-d, joint model" in result.output
    scores = {}
    for match in ("class", "cosine"):
        result = invoke("retrieve", "--index", tmp_path / "index", "--text", "a red bird", "-k", "6", "--json",
                        "--match", match)
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)["results"]
        assert len(rows) == 6
        scores[match] = [r["score"] for r in rows]
    # the cosine lies in [-1, 1]; the class-aware match adds log P(same class) and scales the cosine
    assert all(-1.0001 <= s <= 1.0001 for s in scores["cosine"]) and scores["class"] != scores["cosine"]
    result = invoke("retrieve", "--index", tmp_path / "index", "--text", "a red bird", "-k", "6", "--json")
    assert [r["score"] for r in json.loads(result.output)["results"]] == pytest.approx(scores["class"])


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe not utf-8\n", "text is not valid UTF-8"),
    (b"\n  \n", "text file is empty"),
])
def test_bad_text_files(tmp_path, content, message):
    (tmp_path / "captions.txt").write_bytes(content)
    result = invoke("index", "build", "--texts", tmp_path / "captions.txt", "--out", tmp_path / "index")
    assert result.exit_code == 3
    assert message in result.output and "captions.txt" in result.output


def test_usage_errors(tmp_path, text_index):
    (tmp_path / "empty").mkdir()
    cases = [  # exit code 2: the command line is wrong; 3: fgmm cannot use a file
        (("index", "build", "--images", tmp_path / "empty", "--out", tmp_path / "i"), "no images", 3),
        (("index", "build", "--out", tmp_path / "i"), "exactly one of --images", 2),
        (("retrieve", "--index", tmp_path / "missing", "--text", "hi"), "not a retriever folder", 3),
        (("retrieve", "--index", text_index, "--text", "hi", "--image", "x.jpg"), "exactly one of --text", 2),
        (("retrieve", "--index", text_index, "--image", tmp_path / "nope.jpg"), "query image not found", 3),
        (("retrieve", "--index", text_index, "--text", "hi", "--match", "dot"), "--match must be 'class'", 2),
        (("retrieve", "--index", text_index, "--text", "hi", "--match", "class"), "needs an index built with a", 3),
    ]
    for args, message, code in cases:
        result = invoke(*args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_help_has_examples():
    assert "fgmm retrieve photo-index --text" in invoke("retrieve", "--help").output
    assert "fgmm index build --images photos/" in invoke("index", "build", "--help").output
