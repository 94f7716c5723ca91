"""bench/: every benchmark runs in its --smoke mode (bench/smoke.py, several scripts per process), writes nothing
into the repository, and prints its table. The heaviest scripts' smokes are in test_bench_slow.py (a file of
their own, so that pytest-xdist runs the two groups in parallel), marked slow (-m 'not slow' leaves them out)."""

import glob
import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("bench_smoke", os.path.join(REPO, "bench", "smoke.py"))
smoke_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smoke_module)  # only the standard library at import
SCRIPTS = smoke_module.SCRIPTS
SLOW = ("large", "scale", "losses", "schedules", "versus_paper")  # each compiles a dozen or more programs
FAST = tuple(name for name in SCRIPTS if name not in SLOW)
HELPERS = {"common", "torch_baseline", "smoke"}  # imported by the scripts, or the runner itself


def repository_state() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout


def run_smoke(folder, weights_path, names) -> tuple[dict, bool]:
    """({script: {ok, seconds, cpu_seconds, compiles, output}}, whether the repository changed) of one run of
    bench/smoke.py for `names`."""
    before = repository_state()
    # TMPDIR: the smokes' own temp folders (pictures, sources) land in pytest's, which it prunes
    env = dict(os.environ, PYTHONPATH=REPO, TEXSYNTH_JAX_HOME=str(folder / "home"), MPLBACKEND="Agg",
               TMPDIR=str(folder))
    proc = subprocess.run([sys.executable, os.path.join("bench", "smoke.py"), "--weights", weights_path,
                           "--only", ",".join(names), "--json", str(folder / "smoke.json")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert os.path.exists(folder / "smoke.json"), proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(folder / "smoke.json") as f:
        return json.load(f), before != repository_state()


@pytest.fixture(scope="module")
def fast_smoke(tmp_path_factory, weights_path):
    return run_smoke(tmp_path_factory.mktemp("bench_smoke"), weights_path, FAST)


def check(results: dict, name: str) -> None:
    result = results[name]
    assert result["ok"], result["output"][-4000:]
    if name == "figures":
        assert result["output"].count(".jpg: ") == 4, result["output"]
    else:
        assert "|---" in result["output"], f"{name} printed no table:\n{result['output'][-2000:]}"


def test_every_script_has_a_smoke_run():
    scripts = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(REPO, "bench", "*.py"))}
    assert scripts - HELPERS == set(SCRIPTS), "a bench script without a --smoke run in bench/smoke.py, or gone"
    assert set(SLOW) <= set(SCRIPTS)


@pytest.mark.parametrize("name", FAST)
def test_smoke_run(fast_smoke, name):
    check(fast_smoke[0], name)


def test_smoke_runs_write_nothing_into_the_repository(fast_smoke):
    assert not fast_smoke[1], "a --smoke run wrote into the repository"


def test_speed_smoke_recompiles_nothing(fast_smoke):
    """speed.py's recompiles column: a fresh batch of seeds on a compiled engine must reuse its programs."""
    rows = [line for line in fast_smoke[0]["speed"]["output"].splitlines() if line.startswith("| 32 |")]
    assert rows and all(line.split("|")[14].strip() == "0" for line in rows), rows


def bench_python(code: str, *args: str) -> subprocess.CompletedProcess:
    """`python -c code args` with the repository and bench/ importable (the scripts import their helpers by name)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "bench")]))
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)


def test_versus_paper_layout_is_the_seeds_mean_layout_similarity():
    """versus_paper's layout column: 1 for the source itself, about 0 for the source with its quadrants swapped (its
    layout moved), so their mean for a pair of seeds."""
    code = ("import numpy as np, versus_paper as v; s = np.random.default_rng(0).random((64, 64, 3), np.float32); "
            "moved = np.roll(s, (32, 32), (0, 1)); "
            "print(v.layout(s, [s]), v.layout(s, [moved]), v.layout(s, [s, moved]))")
    proc = bench_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    same, moved, pair = map(float, proc.stdout.split())
    assert same == pytest.approx(1.0) and abs(moved) < 0.15 and pair == pytest.approx((same + moved) / 2)


def test_versus_paper_names_pick_photos_of_the_split(tmp_path):
    """--names runs some photos of the split; a name outside it is refused in one line, naming the split's."""
    for name in ("pebbles.png", "lettuce.png", "zigzag.png", "ink.png"):
        (tmp_path / name).write_bytes(b"")  # split_paths checks that the files are there; nothing is read
    run = lambda names: subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "versus_paper.py"), "--split", "tuning", "--textures",
         str(tmp_path), "--names", names], capture_output=True, text=True, timeout=300)
    proc = run("zigzag.png,water.png")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        "error: --names water.png is not in the tuning split; name some of pebbles.png,lettuce.png,zigzag.png,ink.png")


def test_versus_paper_takes_the_512_px_copy_above_256_px(tmp_path):
    """Above 256 px a photo is shrunk from its 512 px copy where one lies beside it (NAME_512.png), not enlarged."""
    (tmp_path / "bark.png").write_bytes(b"")
    (tmp_path / "bark_512.png").write_bytes(b"")
    (tmp_path / "water.png").write_bytes(b"")
    code = ("import sys, versus_paper as v; d = sys.argv[1]; "
            "print(*(v.detailed_copy(f'{d}/{n}', s) for n, s in (('bark.png', 512), ('bark.png', 256), "
            "('water.png', 512))))")
    proc = bench_python(code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [f"{tmp_path}/bark_512.png", f"{tmp_path}/bark.png", f"{tmp_path}/water.png"]


def test_versus_paper_moved_is_the_source_shifted_anew_per_seed():
    """The "moved" set: each image the source circularly shifted by its own offset, 1/8 to 7/8 of each side away,
    the same offsets every run."""
    code = ("import json, numpy as np, versus_paper as v; s = np.random.default_rng(1).random((64, 48, 3)); "
            "m = v.moved(s, 4); shifts = [[(dy, dx) for dy in range(64) for dx in range(48) "
            "if np.array_equal(np.roll(s, (dy, dx), (0, 1)), x)] for x in m]; "
            "print(json.dumps([m.shape, shifts, bool(np.array_equal(m, v.moved(s, 4)))]))")
    proc = bench_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shape, shifts, same = json.loads(proc.stdout)
    assert shape == [4, 64, 48, 3] and same
    assert all(len(found) == 1 for found in shifts) and len({tuple(f[0]) for f in shifts}) == 4, shifts
    assert all(8 <= dy < 56 and 6 <= dx < 42 for [(dy, dx)] in shifts), shifts
