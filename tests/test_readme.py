"""README.md: its library example runs, its flag table matches the CLI's flags, its first screen has the
commands, and CI runs them."""

import os
import re

import pytest

from texsynth_jax import cli

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


FIRST_SCREEN = README.splitlines()[:15]
RUN_COMMAND = "pip install . && texsynth --flagfile=texture.cfg"
TEST_COMMAND = 'pip install -e ".[test]" && python -m pytest -q tests'


def test_first_screen_has_the_two_commands():
    commands = [line.split("#")[0].strip() for line in FIRST_SCREEN]
    assert RUN_COMMAND in commands and TEST_COMMAND in commands


def test_ci_runs_the_readme_test_command():
    """.ci/run installs the project and runs the tests with the README's very commands, each a line of its own."""
    with open(os.path.join(REPO, ".ci", "run")) as f:
        lines = [line.strip() for line in f]
    steps = [part.strip() for part in TEST_COMMAND.split("&&")]
    assert all(step in lines for step in steps), steps
    assert lines.index(steps[0]) < lines.index(steps[1])
    assert not any("requirements" in line for line in lines if not line.startswith("#"))


def test_flag_table_lists_every_flag_with_its_default():
    table = {m.group(1): m.group(2) for m in re.finditer(r"^\| `--(\w+)` \| ([^|]*) \|", section("Flags"), re.M)}
    defined = {f.name: f for f in cli.FLAGS.get_key_flags_for_module(cli)}
    assert set(table) == set(defined), "README's flag table and the CLI's flags differ"
    for name, flag in defined.items():
        if flag.default in ("", None):
            continue  # documented in words, e.g. "(automatic)"
        default = flag.default_as_str.strip("'")
        assert table[name].strip() == f"`{default}`", f"--{name}: README says {table[name]}, the CLI {default}"


def test_benchmarks_section_points_to_bench():
    benchmarks = section("Benchmarks")
    assert "bench/scale.py" in benchmarks and "| size |" in benchmarks
