"""Packaging: what the wheel and the sdist carry, the metadata, and dependencies that match the imports.

The slow proof (build the wheel, install it in a fresh virtual environment outside the checkout and
use it there) is ``.ci/smoke_wheel.sh``, run by ``.ci/run``; these tests are the fast checks.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import fgmm
from fgmm.errors import ConfigError
from fgmm.resources import example_config, example_configs, knowledge_file, knowledge_files

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SHIPPED_KNOWLEDGE = ("fgmm.ttl", "shapes.ttl", "cub_taxonomy.ttl", "procedural.ttl", "README.md")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _normalise(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0])


# -- shipped files through importlib.resources -------------------------------------------------------

def test_knowledge_files_come_from_the_package():
    for name in SHIPPED_KNOWLEDGE:
        assert knowledge_file(name).is_file()
    assert set(SHIPPED_KNOWLEDGE) <= set(knowledge_files())
    with pytest.raises(ConfigError, match="choose one of: README.md, cub_taxonomy.ttl"):
        knowledge_file("nope.ttl")


def test_example_configs_are_shipped_and_valid():
    from fgmm.experiment import ExperimentConfig

    assert {"cub_image", "cub_finetune"} <= set(example_configs())
    for name in example_configs():
        ExperimentConfig.from_file(example_config(name))
    assert example_config("cub_image.yaml") == example_config("cub_image")
    with pytest.raises(ConfigError, match="choose one of: .*cub_image"):
        example_config("cub_imagez")


# -- metadata ------------------------------------------------------------------------------------------

def test_one_version_source():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fgmm.__version__"}
    assert importlib.metadata.version("fgmm") == fgmm.__version__


def test_licence_urls_classifiers():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"  # SPDX expression, not the deprecated table
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # PEP 639: one or the other
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10_000  # the full text
    assert {"Homepage", "Source", "Issues"} <= set(project["urls"])
    assert "Typing :: Typed" in project["classifiers"]
    assert (ROOT / "fgmm" / "py.typed").is_file()


# -- dependencies match the imports ---------------------------------------------------------------------

def _imports_and_extras(package: Path) -> tuple[dict[str, set[str]], dict[str, set[str]], set[str]]:
    """Top-level third-party modules imported by ``package`` (module -> files), modules imported
    through ``require(module, extra)`` (module -> extras), and every string literal."""
    imports: dict[str, set[str]] = {}
    required: dict[str, set[str]] = {}
    strings: set[str] = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require" and len(node.args) == 2:
                module, extra = (getattr(a, "value", None) for a in node.args)
                if isinstance(module, str) and isinstance(extra, str):
                    required.setdefault(module.split(".")[0], set()).add(extra)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
            for name in names:
                top = name.split(".")[0]
                if top != "fgmm" and top not in sys.stdlib_module_names:
                    imports.setdefault(top, set()).add(str(path.relative_to(package.parent)))
    return imports, required, strings


def test_dependencies_match_imports():
    """Every third-party import is declared (required, or an extra when imported through ``require``),
    and every required dependency is imported (or, for weight packages, named) somewhere in fgmm."""
    project = PYPROJECT["project"]
    required = {_requirement_name(r) for r in project["dependencies"]}
    extras = {name: {_requirement_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    distributions = importlib.metadata.packages_distributions()
    imports, lazy, strings = _imports_and_extras(ROOT / "fgmm")

    problems = []
    used: set[str] = set()
    for module, files in sorted(imports.items()):
        dists = {_normalise(d) for d in distributions.get(module, [module])}
        used |= dists
        if not dists & required:
            where = [e for e, reqs in extras.items() if dists & reqs]
            advice = f"import it through fgmm.errors.require(..., {where[0]!r})" if where else "declare it"
            problems.append(f"{module} (imported in {sorted(files)[0]}) is not a required dependency: {advice}")
    for module, wanted in sorted(lazy.items()):
        dists = {_normalise(d) for d in distributions.get(module, [module])}
        for extra in wanted:
            if extra not in extras:
                problems.append(f"require({module!r}, {extra!r}): no extra '{extra}' in pyproject.toml")
            elif module in distributions and not dists & extras[extra]:
                problems.append(f"require({module!r}, {extra!r}): the extra does not install {sorted(dists)}")
    named = {_normalise(s) for s in strings if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", s)}
    for dist in sorted(required - used - named):
        problems.append(f"required dependency '{dist}' is never imported by fgmm: drop it or move it to an extra")
    assert not problems, "\n".join(problems)


# -- the built artifacts --------------------------------------------------------------------------------

def _data_packages() -> dict[str, str]:
    """setup.py's ``DATA_PACKAGES``: package name -> repository folder shipped as that package."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    node = next(n for n in tree.body
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DATA_PACKAGES")
    return ast.literal_eval(node.value)


def _copy_project(dest: Path) -> Path:
    """The files a build reads (what a clean clone has), without caches or build outputs."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    for folder in sorted({"fgmm", *_data_packages().values()}):
        shutil.copytree(ROOT / folder, dest / folder, ignore=ignore)
    return dest


@pytest.mark.timeout(180)
def test_wheel_and_sdist_ship_the_data_without_warnings(tmp_path):
    project = _copy_project(tmp_path / "src")
    out = tmp_path / "dist"
    script = ("import sys; from setuptools import build_meta as b; out = sys.argv[1]; "  # setuptools rewrites argv
              "print(b.build_sdist(out)); print(b.build_wheel(out))")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", script, str(out)], cwd=project,
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert not re.search(r"\w*Warning\b|!!", log), "setuptools warned:\n" + log[-3000:]

    wheel = zipfile.ZipFile(next(out.glob("*.whl")))
    names = set(wheel.namelist())
    for name in SHIPPED_KNOWLEDGE:
        assert f"fgmm/knowledge/{name}" in names
    assert {"fgmm/configs/cub_image.yaml", "fgmm/py.typed", "fgmm/resources.py"} <= names
    assert {"fgmm/data/cub_zsl_ps/testclasses.txt", "fgmm/data/cub_zsl_ps/trainvalclasses.txt"} <= names
    assert f"fgmm-{fgmm.__version__}.dist-info/licenses/LICENSE" in names
    strays = ("knowledge/", "examples/", "datasets/", "tests/")
    assert not any(n.startswith(strays) for n in names)  # no top-level strays
    data_files = {str(f.relative_to(project)) for f in (project / "fgmm").rglob("*")
                  if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts}
    for package, folder in _data_packages().items():  # repository folders shipped as packages (setup.py)
        data_files |= {f"{package.replace('.', '/')}/{f.relative_to(project / folder)}"
                       for f in (project / folder).rglob("*") if f.is_file() and f.suffix != ".pyc"}
    assert data_files <= names, f"data files missing from the wheel (add to package-data): {data_files - names}"
    metadata = wheel.read(f"fgmm-{fgmm.__version__}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata and "Project-URL: Source" in metadata
    # torchmetrics only cross-checks metrics in the tests: never a runtime requirement
    assert not re.search(r"^Requires-Dist: torchmetrics[^;\n]*$", metadata, re.M)

    import tarfile

    with tarfile.open(next(out.glob("*.tar.gz"))) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    assert {"LICENSE", "setup.py", "knowledge/shapes.ttl", "examples/configs/cub_image.yaml"} <= members


def test_help_and_errors_do_not_point_into_the_repository():
    """A wheel user has no datasets/, examples/, benchmarks/ or knowledge/ folder: help texts (fgmm/cli) and
    error messages must not send them there (name a shipped resource, a command, or say it inline)."""
    pattern = re.compile(r"(?<![\w.])(datasets|examples|benchmarks|knowledge)/\S")
    found = []
    for path in sorted((ROOT / "fgmm").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_cli = path.parent.name == "cli"
        spots = [tree] if in_cli else [n for n in ast.walk(tree) if isinstance(n, ast.Raise)]
        for spot in spots:
            for node in ast.walk(spot):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.search(node.value):
                    if in_cli and node is getattr(tree.body[0], "value", None):
                        continue  # the module docstring is for developers
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.strip()[:90]}")
    assert not found, "\n".join(found)
