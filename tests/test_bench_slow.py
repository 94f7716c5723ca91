"""bench/: the heaviest scripts' --smoke runs (test_bench.py has the others and the helpers), in a file of
their own so that pytest-xdist runs them beside the rest. Marked slow: -m 'not slow' leaves them out."""

import pytest

from test_bench import SLOW, check, run_smoke

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slow_smoke(tmp_path_factory, weights_path):
    return run_smoke(tmp_path_factory.mktemp("bench_smoke_slow"), weights_path, SLOW)


@pytest.mark.parametrize("name", SLOW)
def test_slow_smoke_run(slow_smoke, name):
    check(slow_smoke[0], name)


def test_slow_smoke_runs_write_nothing_into_the_repository(slow_smoke):
    assert not slow_smoke[1], "a --smoke run wrote into the repository"


def test_versus_paper_against_an_earlier_runs_reference(tmp_path, weights_path):
    """--against: the torch rows of an earlier output are the reference of the ratio columns (no PyTorch run),
    other rows and a reference of another seed count are ignored, and a file without any is refused in one line."""
    import os
    import subprocess
    import sys

    from test_bench import REPO

    earlier = tmp_path / "earlier.md"
    earlier.write_text("| photo | size | set | seconds | distance | diversity | copied | distance / ref "
                       "| diversity / ref | time / ref |\n|---|---|---|---|---|---|---|---|---|---|\n"
                       "| gravel.png | 32 | default | 1.0 | 9.0000 | 9.000 | 0.00 | 1.00x | 1.00x | 1.00x |\n"
                       "| gravel.png | 32 | torch | 1000.0 | 8.0000 | 0.500 | 0.00 | 1.00x | 1.00x | 1.00x |\n"
                       # a later section's reference of 4 seeds: not the smoke run's (2 seeds)
                       "\n## 4 seeds\n\n    python bench/versus_paper.py --seeds 4\n\n"
                       "| gravel.png | 32 | torch | 10.0 | 1.0000 | 0.100 | 0.00 | 1.00x | 1.00x | 1.00x |\n")
    env = dict(os.environ, PYTHONPATH=REPO, TEXSYNTH_JAX_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path))
    run = lambda against: subprocess.run(
        [sys.executable, os.path.join("bench", "versus_paper.py"), "--smoke", "--sets", "default", "--weights",
         weights_path, "--against", str(against)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    proc = run(earlier)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| gravel.png | 32 | default |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "| torch |" not in proc.stdout
    ratio = lambda cell: float(cell.rstrip("x"))
    assert abs(ratio(cells[7]) - float(cells[4]) / 8) <= 0.006, row  # printed to 2 decimals
    assert abs(ratio(cells[8]) - float(cells[5]) / 0.5) <= 0.006, row
    assert len(cells) == 11 and -1 <= float(cells[10]) <= 1, row  # the layout column, last
    (tmp_path / "none.md").write_text(earlier.read_text().replace("| torch |", "| paper |"))
    proc = run(tmp_path / "none.md")
    assert proc.returncode != 0 and proc.stderr.strip().endswith("no torch rows; give the output of a run with the "
                                                                  "reference"), proc.stderr
