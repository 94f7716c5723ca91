"""README.md: its library example runs, its flag table matches run.py, its first screen has the commands."""

import os
import re

import pytest

import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(REPO, "README.md")).read()


def section(heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def test_library_example_runs(tmp_path, monkeypatch, weights_path):
    code = re.search(r"```python\n(.*?)```", section("Library example"), re.S).group(1)
    settings = "size, iterations, num_seeds = 256, 300, 4\n"
    assert settings in code, "the test shrinks the example through this line; keep it or update the test"
    code = code.replace(settings, "size, iterations, num_seeds = 32, 1, 1\n")
    (tmp_path / "models").mkdir()
    os.symlink(weights_path, tmp_path / "models" / "vgg16_lpips.h5")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    assert (tmp_path / "texture_0.png").is_file()
    record = tmp_path / "out" / "library" / "default_texture_run.json"
    assert '"status": "complete"' in record.read_text()


def test_first_screen_has_the_two_commands():
    first_screen = "\n".join(README.splitlines()[:15])
    assert "pip install -r requirements.txt && python run.py --flagfile=texture.cfg" in first_screen
    assert "pip install -r requirements-test.txt && python -m pytest -q tests" in first_screen


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(REPO, ".ci", "run")) as f:
        assert "\npython -m pytest -q tests\n" in f.read()


def test_flag_table_lists_every_flag_with_its_default():
    table = {m.group(1): m.group(2) for m in re.finditer(r"^\| `--(\w+)` \| ([^|]*) \|", section("Flags"), re.M)}
    defined = {f.name: f for f in run.FLAGS.get_key_flags_for_module(run)}
    assert set(table) == set(defined), "README's flag table and run.py's flags differ"
    for name, flag in defined.items():
        if flag.default in ("", None):
            continue  # documented in words, e.g. "(automatic)"
        default = flag.default_as_str.strip("'")
        assert table[name].strip() == f"`{default}`", f"--{name}: README says {table[name]}, run.py {default}"


def test_benchmarks_section_points_to_bench():
    benchmarks = section("Benchmarks")
    assert "bench/scale.py" in benchmarks and "| size |" in benchmarks
