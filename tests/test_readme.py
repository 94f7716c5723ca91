"""README.md: its library example runs, its flag table is the CLI's, its first screen has the two commands."""

import os
import re
import subprocess
import sys

from test_docs import check_defaults, cli_flags, flag_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(REPO, "README.md")).read()


def section(heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def test_library_example_runs(tmp_path):
    """The example as a user runs it: a fresh process in an empty folder, the default weights converted into
    the per-user cache ($TEXSYNTH_JAX_HOME here); shrunk to 64 px, one scale of one iteration, two shallow
    layers and no judge, so that it compiles in seconds."""
    code = re.search(r"```python\n(.*?)```", section("The library"), re.S).group(1)
    shrink = {"size, num_seeds = 256, 4\n": "size, num_seeds = 64, 1\n",
              "SynthesisConfig(size=size": 'SynthesisConfig(coarse_iterations=(), iterations=1, '
                                           'layers=("conv1_1", "pool1"), layer_weights=(1.0, 1.0), size=size',
              "RunOptions(output_dir=": "RunOptions(judge=False, output_dir="}
    for old, new in shrink.items():
        assert old in code, f"the test shrinks the example through {old!r}; keep it or update the test"
        code = code.replace(old, new)
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=REPO, TEXSYNTH_JAX_HOME=str(home))  # XLA_FLAGS from conftest: compiles faster
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "complete" in proc.stdout, proc.stdout
    assert (work / "texture_0.png").is_file()
    record = work / "out" / "library" / "default_texture_run.json"
    assert '"status": "complete"' in record.read_text()
    assert '"mean_colour:10"' in record.read_text(), "the registered term did not reach the job"
    assert sorted(os.listdir(work)) == ["out", "texture_0.png"], "the example wrote outside its output folder"
    cached = [name for _, _, names in os.walk(home) for name in names if name.endswith(".h5")]
    assert cached, "the default weights were not converted into the per-user cache"


FIRST_SCREEN = README.splitlines()[:15]
RUN_COMMAND = "pip install . && texsynth --flagfile=texture.cfg"
TEST_COMMAND = 'pip install -e ".[test]" && python -m pytest -q tests'


def test_first_screen_has_the_two_commands():
    first_screen = "\n".join(README.splitlines()[:15])
    assert "pip install . && texsynth --flagfile=texture.cfg" in first_screen
    assert 'pip install -e ".[test]" && python -m pytest -q tests' in first_screen


def test_ci_runs_the_readme_test_command():
    """.ci/run installs the project and runs the tests with the README's very commands, each a line of its own
    (the install through uv's pip, the same command faster)."""
    with open(os.path.join(REPO, ".ci", "run")) as f:
        lines = [line.strip().removeprefix("uv ") for line in f]
    steps = [part.strip() for part in TEST_COMMAND.split("&&")]
    assert all(step in lines for step in steps), steps
    assert lines.index(steps[0]) < lines.index(steps[1])
    assert not any("requirements" in line for line in lines if not line.startswith("#"))


def test_flag_table_names_real_flags_with_their_defaults():
    flags = cli_flags()
    table = flag_table(section("Flags that matter"))
    assert len(table) >= 15 and not set(table) - set(flags), f"unknown flags: {sorted(set(table) - set(flags))}"
    assert not check_defaults(table, flags)


def test_headline_figures_link_where_they_were_measured():
    rows = [line for line in section("Headline figures").splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) > 5
    for row in rows[1:]:
        assert re.search(r"\]\(docs/\w+\.md#[\w-]+\)", row), f"a headline figure without its page: {row}"
