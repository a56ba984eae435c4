"""Every Python and shell block of README.md runs, in order, on small generated data (doctest-like).

The convention (also in /work/notes/README_BLOCKS.md for the people who write the README):

* Blocks fenced as ```python (or ```py) run in **one Python process**, in README order, sharing one
  namespace (a name defined in an earlier Python block is visible in later ones, as in a notebook).
  Blocks fenced as ```bash (or ```sh, ```shell) run with ``bash -euo pipefail``, each in a new shell.
  Python and shell blocks interleave in README order, in one shared folder, so a shell block can use a
  file an earlier Python block wrote and the other way round. Any other fence (```text, ```yaml,
  ```turtle, a bare ``` diagram) is not run; a bare block that looks like code (its first line starts
  with ``fgmm ``, ``$ ``, ``import ``, ``from ``, ``pip ``, ``python ``, ``make ``) is an error: label it.
* The working folder is a temporary copy of what a user of the README has, generated here (no real data,
  no network):
    ``data/cub200/``  a tiny CUB-200-2011 tree (3 real CUB classes x 4 images, attributes, captions for
                      class 001, one recording) built by ``tests/tiny_cub.py --real-names``;
    ``photos/``       9 procedural bird photos in 3 class subfolders (``photos/<class>/<id>.jpg``);
    ``query.jpg``     one more photo;  ``captions.txt``  a few sentences, one per line;
    ``recordings/``   3 procedural bird songs (WAV, one per class);  ``song.mp3``, ``query.mp3``  two more (MP3);
    ``crawled/``      web-crawler output: ``crawled/<class>/<image>.jpg`` with a sidecar ``.txt`` of page text,
                      one image in a wrong class folder (a noisy web label).
  Environment: ``FGMM_CACHE`` points into the folder, ``HF_HUB_OFFLINE=1``, ``MPLBACKEND=Agg``, the
  test's Python environment first on ``PATH`` (so ``fgmm`` and ``python`` are the installed ones).
* Shell blocks cannot rebuild the environment they run in: ``make TARGET`` runs as ``make -n TARGET``
  against the repository's Makefile (the target must exist; running it would install and test inside
  the tests), and ``pip install ...`` is not run but its extras are checked against pyproject.toml
  (``pip install "fgmm[faiss]"`` fails the test if there is no ``faiss`` extra).
* A block may declare in an HTML comment on the line right before its fence (blank lines allowed)::

      <!-- readme-test: timeout=600 -->      seconds this block may take (default 300)
      <!-- readme-test: exit=1 -->           a shell block that shows a failure: its exit status
      <!-- readme-test: raises=DataError --> a Python block that shows an error: the exception's class name

  Nothing can be skipped: a block too slow for the suite gets smaller data in the README itself
  (``--classes 4 --images 6``, ``epochs=3``), the way a user would try it first.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHON_LANGS = {"python", "py"}
SHELL_LANGS = {"bash", "sh", "shell"}
CODE_STARTS = ("fgmm ", "$ ", "import ", "from ", "pip ", "python ", "make ")
DEFAULT_TIMEOUT = 300  # a guard against hangs; the suite's budget is watched with --durations


@dataclass
class Block:
    """One fenced block of a markdown file."""

    lang: str
    code: str
    line: int  # line number of the opening fence (1-based)
    options: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        return "python" if self.lang in PYTHON_LANGS else "shell" if self.lang in SHELL_LANGS else None

    @property
    def timeout(self) -> float:
        return float(self.options.get("timeout", DEFAULT_TIMEOUT))


FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
DIRECTIVE = re.compile(r"^<!--\s*readme-test:(?P<body>.*?)-->\s*$")


def parse_blocks(text: str) -> list[Block]:
    """Fenced blocks of ``text`` with the ``readme-test`` options of the comment right before each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, start = match["fence"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(match["indent"]):] if lines[i].startswith(match["indent"]) else lines[i])
            i += 1
        options: dict[str, str] = {}
        previous = start - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        directive = DIRECTIVE.match(lines[previous].strip()) if previous >= 0 else None
        if directive:
            for item in directive["body"].split():
                key, _, value = item.partition("=")
                options[key] = value
        blocks.append(Block(match["lang"].lower(), "\n".join(body) + "\n", start + 1, options))
        i += 1
    return blocks


BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in BLOCKS if b.kind is not None]

# The Python process: reads {"code", "name"} requests from one pipe, answers {"ok", "error"} on another;
# what the blocks print goes to a log file.
RUNNER = r"""
import json, os, sys, traceback
requests, answers = os.fdopen(int(sys.argv[1]), "r"), os.fdopen(int(sys.argv[2]), "w")
namespace = {"__name__": "__main__"}
for line in requests:
    request = json.loads(line)
    try:
        exec(compile(request["code"], request["name"], "exec"), namespace)
        answer = {"ok": True}
    except BaseException as exc:
        answer = {"ok": False, "type": type(exc).__name__, "error": traceback.format_exc()}
    sys.stdout.flush(); sys.stderr.flush()
    answers.write(json.dumps(answer) + "\n"); answers.flush()
"""

# Shell prelude: make is a dry run against the repository's Makefile; pip checks the extras it names.
PRELUDE = r"""
make() { command make --no-print-directory -n -C "$FGMM_README_REPO" "$@" >/dev/null; }
pip() {
  python - "$@" <<'PY'
import os, re, sys, tomllib
with open(os.path.join(os.environ["FGMM_README_REPO"], "pyproject.toml"), "rb") as f:
    known = set(tomllib.load(f)["project"]["optional-dependencies"])
for arg in sys.argv[1:]:
    for group in re.findall(r"\[([^\]]*)\]", arg):
        for name in filter(None, (g.strip() for g in group.split(","))):
            if name not in known:
                sys.exit(f"README: pip install names the extra '{name}'; pyproject.toml has {sorted(known)}")
print("(README test: pip not run; extras checked)")
PY
}
"""


def _make_media(sandbox: Path) -> None:
    """``photos/<class>/*.jpg`` (3 x 3 procedural birds), ``query.jpg``, ``captions.txt``, ``recordings/*.wav``
    (a song per class), ``song.mp3`` and ``query.mp3``."""
    import soundfile as sf

    from fgmm.data.procedural import generate_procedural

    dataset = generate_procedural(sandbox / ".generated", num_classes=3, images_per_class=4, image_size=64,
                                  unseen_classes=0, noise_rate=0.0, with_audio=True, seed=0)
    seen: dict[int, int] = {}
    (sandbox / "recordings").mkdir()
    for sample in dataset:
        k = seen.get(sample.label, 0)
        seen[sample.label] = k + 1
        if k < 3:
            folder = sandbox / "photos" / dataset.class_names[sample.label].replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(sample.image, folder / Path(sample.image).name)
        elif not (sandbox / "query.jpg").exists():
            shutil.copy(sample.image, sandbox / "query.jpg")
        if k == 0:
            shutil.copy(sample.audio, sandbox / "recordings" / Path(sample.audio).name)
        elif k == 1 and not (sandbox / "song.mp3").exists() or k == 2 and not (sandbox / "query.mp3").exists():
            wave, rate = sf.read(sample.audio, dtype="float32")
            sf.write(sandbox / ("song.mp3" if k == 1 else "query.mp3"), wave, rate, format="MP3")
    captions = [t for s in dataset for t in s.texts][:6]
    (sandbox / "captions.txt").write_text("\n".join(captions) + "\n", encoding="utf-8")
    for i, sample in enumerate(dataset):  # crawled/<folder label>/<id>.jpg + .txt; sample 0 lands in a wrong folder
        label = (sample.label + 1) % dataset.num_classes if i == 0 else sample.label
        folder = sandbox / "crawled" / dataset.class_names[label].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample.image, folder / Path(sample.image).name)
        (folder / f"{Path(sample.image).stem}.txt").write_text("\n".join(sample.texts) + "\n", encoding="utf-8")
    shutil.rmtree(sandbox / ".generated")


class ReadmeSession:
    """The shared folder, environment and Python process the blocks run in."""

    def __init__(self, sandbox: Path):
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_cub import REAL_CUB_CLASSES, build_tiny_cub

        self.sandbox = sandbox
        build_tiny_cub(sandbox / "data" / "cub200", classes=REAL_CUB_CLASSES)
        _make_media(sandbox)
        self.env = {**os.environ, "FGMM_CACHE": str(sandbox / ".cache" / "features"), "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg", "FGMM_README_REPO": str(ROOT),
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.log = sandbox / ".readme-python.log"
        self.process: subprocess.Popen | None = None

    def _start(self) -> None:
        self._requests_r, self._requests_w = os.pipe()
        self._answers_r, self._answers_w = os.pipe()
        log = open(self.log, "ab")  # noqa: SIM115  (owned by the process)
        self.process = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(self._requests_r), str(self._answers_w)], cwd=self.sandbox,
            env=self.env, stdout=log, stderr=subprocess.STDOUT, pass_fds=(self._requests_r, self._answers_w))
        log.close()
        os.close(self._requests_r)
        os.close(self._answers_w)
        self.answers = os.fdopen(self._answers_r, "r")

    def run_python(self, block: Block) -> dict:
        if self.process is None:
            self._start()
        request = json.dumps({"code": block.code, "name": f"README.md:{block.line}"}) + "\n"
        start = self.log.stat().st_size
        os.write(self._requests_w, request.encode())
        ready, _, _ = select.select([self.answers], [], [], block.timeout)
        if not ready:
            self.close()
            pytest.fail(f"README.md:{block.line}: the Python block took over {block.timeout:.0f} s "
                        "(make it faster with smaller data, or declare <!-- readme-test: timeout=N -->)")
        line = self.answers.readline()
        if not line:
            self.close()
            pytest.fail(f"README.md:{block.line}: the Python process died:\n{self._output(start)}")
        return {**json.loads(line), "output": self._output(start)}

    def _output(self, start: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")[-4000:]

    def run_shell(self, block: Block) -> subprocess.CompletedProcess:
        script = "set -euo pipefail\n" + PRELUDE + block.code
        try:
            return subprocess.run(["bash", "-c", script], cwd=self.sandbox, env=self.env, capture_output=True,
                                  text=True, timeout=block.timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"README.md:{block.line}: the shell block took over {block.timeout:.0f} s "
                        "(make it faster with smaller data, or declare <!-- readme-test: timeout=N -->)")

    def close(self) -> None:
        if self.process is not None:
            os.close(self._requests_w)
            self.answers.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory):
    readme = ReadmeSession(tmp_path_factory.mktemp("readme"))
    yield readme
    readme.close()


def _show(block: Block) -> str:
    return f"README.md:{block.line} ({block.lang} block):\n{block.code}"


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"L{b.line}-{b.kind}" for b in RUNNABLE])
def test_readme_block_runs(block: Block, session: ReadmeSession):
    if block.kind == "python":
        answer = session.run_python(block)
        expected = block.options.get("raises")
        if expected:
            assert not answer["ok"] and answer["type"] == expected, (
                f"{_show(block)}\nexpected {expected}, got: {answer.get('error') or 'no exception'}")
        else:
            assert answer["ok"], f"{_show(block)}\n{answer['error']}\noutput:\n{answer['output']}"
    else:
        proc = session.run_shell(block)
        expected = int(block.options.get("exit", 0))
        assert proc.returncode == expected, (
            f"{_show(block)}\nexit status {proc.returncode} (expected {expected})\n"
            f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")


def test_readme_has_no_unlabelled_code():
    """A bare fence that holds commands or Python would escape the tests: label it."""
    bad = [b for b in BLOCKS if not b.lang and b.code.lstrip().startswith(CODE_STARTS)]
    assert not bad, "label these README blocks (```bash / ```python):\n" + "\n".join(_show(b) for b in bad)


def test_parser_and_directives():
    text = ("x\n<!-- readme-test: timeout=7 exit=1 -->\n\n```bash\nfgmm nope\n```\n"
            "```python\nprint(1)\n```\n```\nfgmm bare\n```\n  ```text\nout\n  ```\n")
    blocks = parse_blocks(text)
    assert [(b.lang, b.kind, b.line) for b in blocks] == [("bash", "shell", 4), ("python", "python", 7),
                                                           ("", None, 10), ("text", None, 13)]
    assert blocks[0].options == {"timeout": "7", "exit": "1"} and blocks[0].timeout == 7.0
    assert blocks[1].options == {} and blocks[3].code == "out\n"
