"""The distribution: pyproject.toml ships both packages, the data and the `texsynth` command; its lists of
requirements are requirements*.txt's; one version; the library imports no flags and no POSIX-only lock."""

import ast
import glob
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

import texsynth_jax
from texsynth_jax import _version, defaults

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "texsynth_jax")


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def requirements(name: str) -> list[str]:
    with open(os.path.join(REPO, name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith(("#", "-r"))]


def test_dependencies_are_the_requirements_files():
    project = pyproject()["project"]
    assert project["dependencies"] == requirements("requirements.txt")
    assert project["optional-dependencies"]["test"] == requirements("requirements-test.txt")
    assert {"test", "cuda", "cloud", "notebook"} <= set(project["optional-dependencies"])


def test_one_version_in_the_package_the_metadata_and_the_record():
    assert texsynth_jax.__version__ == _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", texsynth_jax.__version__)
    config = pyproject()
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "texsynth_jax._version.__version__"}
    assert config["project"]["scripts"] == {"texsynth": "texsynth_jax.cli:run"}
    from texsynth_jax import outputs

    assert outputs.versions()["texsynth_jax"] == texsynth_jax.__version__
    try:  # installed (pip install -e ".[test]", as CI does): the metadata says the same
        assert importlib.metadata.version("texsynth_jax") == texsynth_jax.__version__
    except importlib.metadata.PackageNotFoundError:
        pass


def test_the_wheel_ships_both_packages_the_data_and_the_command(tmp_path):
    """`pip install .` builds this wheel: built here offline, from a copy (setuptools writes build files
    beside the sources)."""
    pytest.importorskip("setuptools")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source)
    for name in ("texsynth_jax", "weights_convert"):
        shutil.copytree(os.path.join(REPO, name), source / name, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = glob.glob(str(tmp_path / "dist" / "*.whl"))
    assert os.path.basename(wheel).startswith(f"texsynth_jax-{texsynth_jax.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    shipped = {os.path.relpath(p, REPO).replace(os.sep, "/") for package in ("texsynth_jax", "weights_convert")
               for p in glob.glob(os.path.join(REPO, package, "**", "*"), recursive=True)
               if os.path.isfile(p) and "__pycache__" not in p}
    assert shipped <= names, sorted(shipped - names)
    assert os.path.relpath(defaults.DEFAULT_TEXTURE, REPO) in names
    assert "texsynth = texsynth_jax.cli:run" in entry_points


def imports(path: str) -> list[tuple[str, bool]]:
    """(module, at top level) for every import statement of a source file."""
    tree = ast.parse(open(path).read())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(f"{node.module}.{alias.name}", id(node) in top) for alias in node.names]
    return found


def test_only_the_cli_reads_flags_and_the_lock_is_imported_where_it_is_taken():
    modules = sorted(glob.glob(os.path.join(PACKAGE, "*.py")))
    assert len(modules) > 10
    for path in modules:
        name = os.path.basename(path)
        found = imports(path)
        if name != "cli.py":
            assert not [m for m, _ in found if m.split(".")[0] == "absl"], f"{name} imports absl (cli.py's)"
            assert not [m for m, _ in found if m.startswith("texsynth_jax.cli")], f"{name} imports the CLI"
        # POSIX only: `import texsynth_jax` must work where there is no fcntl.
        assert not [m for m, top in found if m == "fcntl" and top], f"{name} imports fcntl at import time"


def test_no_test_or_notebook_touches_sys_path():
    needle = "sys." + "path"
    files = glob.glob(os.path.join(REPO, "tests", "*.py")) + glob.glob(os.path.join(REPO, "examples", "*.ipynb"))
    touched = [os.path.basename(p) for p in files if needle in open(p).read()]
    assert not touched, touched


def test_the_library_imports_from_another_folder_without_the_checkout_on_its_path(tmp_path):
    """From another folder: the package that the path finds is this one (installed, or through PYTHONPATH
    here), and it brings neither the CLI nor the converter with it."""
    code = ("import sys, texsynth_jax\n"
            "assert 'texsynth_jax.cli' not in sys.modules and 'weights_convert' not in sys.modules\n"
            "print(texsynth_jax.__version__, texsynth_jax.__file__)\n")
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    version, where = result.stdout.split()
    assert version == texsynth_jax.__version__ and os.path.dirname(where) == PACKAGE
