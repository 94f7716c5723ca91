"""texsynth_jax/cli.py at its edges: --paper, --imports, the multi-host flags, --output_dir's messages,
and --helpshort of the `texsynth` command. Each refusal is one `error:` line, exit code 2, nothing written."""

import dataclasses
import errno
import json
import os
import re
import subprocess
import sys
import time

import pytest

from test_run import REPO, RUN_PY, cli_env, in_process, listing  # noqa: F401 (cli_env is a fixture)
from test_run_scale import free_port
from texsynth_jax import SynthesisConfig, cli, config as config_lib


def build_config(args):
    """The SynthesisConfig the CLI builds from `args` (flags parsed, nothing run)."""
    cli.FLAGS.unparse_flags()
    try:
        cli.FLAGS(["texsynth", *args])
        return cli.from_flags(SynthesisConfig)
    finally:
        cli.FLAGS.unparse_flags()


def test_paper_mode_takes_every_setting_not_given():
    assert set(config_lib.PAPER_MODE) <= {f.name for f in dataclasses.fields(SynthesisConfig)}
    paper = build_config(["--paper"])
    assert paper == dataclasses.replace(SynthesisConfig(), **config_lib.PAPER_MODE)
    assert paper.coarse_iterations == () and paper.padding == "zero" and paper.loss_weights == {"gram": 1.0}
    assert paper.pooling == "avg" and paper.init_scale == pytest.approx(1 / 255)
    assert build_config([]) != paper  # the defaults are not the paper's
    # Explicit flags win, on the command line and in a flag file alike.
    mixed = build_config(["--paper", "--iterations=7", "--padding=reflect", "--size=64"])
    assert (mixed.iterations, mixed.padding, mixed.size) == (7, "reflect", (64, 64))
    assert mixed.coarse_iterations == () and mixed.init_scale == paper.init_scale
    # --layers alone: every layer weighs 1, as without --paper.
    assert build_config(["--paper", "--layers=conv1_1,pool2"]).layer_weights == (1.0, 1.0)


def test_paper_mode_is_logged_and_recorded(tmp_path, weights_path, capsys):
    out = tmp_path / "out"
    code, stderr = in_process(["--paper", "--size=32", "--iterations=1", "--judge=false", "--layers=conv1_1,pool1",
                               f"--weights={weights_path}", f"--output_dir={out}"], capsys)
    assert code == 0, stderr
    line = next(l for l in stderr.splitlines() if l.startswith("paper mode"))
    assert "--padding=zero" in line and "--coarse_iterations= " in line and "--pooling=avg" in line
    assert "--iterations=" not in line and "--layer_weights" not in line  # given, or following --layers
    record = json.loads((out / "default_texture_run.json").read_text())
    assert record["flags"]["paper"] is True and record["config"]["padding"] == "zero"
    assert record["config"]["init_scale"] == pytest.approx(1 / 255)


def test_imports_run_before_the_config_is_built(tmp_path, monkeypatch, capsys):
    """A module in the current folder is imported before the settings are checked (so it can register a
    loss term that --loss names); the refusal that follows is the config's, not the import's."""
    (tmp_path / "texsynth_test_probe.py").write_text("import os\nos.environ['TEXSYNTH_TEST_PROBE'] = 'imported'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TEXSYNTH_TEST_PROBE", raising=False)
    before = listing(tmp_path)
    try:
        code, stderr = in_process(["--imports=texsynth_test_probe", "--iterations=-1"], capsys)
    finally:
        sys.modules.pop("texsynth_test_probe", None)
    assert code == 2 and "iterations" in stderr.strip().splitlines()[-1]
    assert os.environ.get("TEXSYNTH_TEST_PROBE") == "imported"
    assert listing(tmp_path) == before


def test_an_imported_module_registers_a_loss_term_named_by_loss(tmp_path, monkeypatch):
    from texsynth_jax import terms

    if not hasattr(terms, "register"):
        pytest.skip("terms.register (the open registry) is not in this checkout yet")
    (tmp_path / "texsynth_test_terms.py").write_text(
        "import jax.numpy as jnp\n"
        "from texsynth_jax import terms\n"
        "terms.register('meancolour', lambda features, source, layers, size: jnp.mean(source, axis=(0, 1)),\n"
        "               lambda features, image, stats, layer_weights, key: jnp.sum((jnp.mean(image, axis=(0, 1))"
        " - stats) ** 2))\n")
    monkeypatch.chdir(tmp_path)
    try:
        config = None
        cli.FLAGS.unparse_flags()
        cli.FLAGS(["texsynth", "--imports=texsynth_test_terms", "--loss=gram:1,meancolour:2"])
        cli.import_modules(cli.FLAGS.imports)
        config = cli.from_flags(SynthesisConfig)
    finally:
        cli.FLAGS.unparse_flags()
        sys.modules.pop("texsynth_test_terms", None)
    assert config.loss_weights == {"gram": 1.0, "meancolour": 2.0}


@pytest.mark.parametrize("module,source,words", [
    ("texsynth_no_such_module", None, "ModuleNotFoundError"),
    ("texsynth_test_broken", "raise RuntimeError('broken on purpose')\n", "RuntimeError: broken on purpose"),
    ("texsynth_test_syntax", "def (\n", "SyntaxError"),
], ids=["missing", "raises", "syntax"])
def test_a_module_that_fails_to_import_is_one_line(module, source, words, tmp_path, monkeypatch, capsys):
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    try:
        code, stderr = in_process([f"--imports={module}", f"--output_dir={tmp_path / 'out'}"], capsys)
    finally:
        sys.modules.pop(module, None)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"error: --imports: cannot import {module} (") and words in lines[0], lines[0]
    assert listing(tmp_path) == before


MULTI_HOST = [  # (arguments, words the error line must contain)
    (["--coordinator_address=localhost"], "is not HOST:PORT"),
    (["--coordinator_address=localhost:"], "is not HOST:PORT"),
    (["--coordinator_address=:1234"], "is not HOST:PORT"),
    (["--coordinator_address=localhost:99999"], "port in 1..65535"),
    (["--coordinator_address=localhost:0"], "port in 1..65535"),
    (["--coordinator_address=localhost:12ab"], "is not HOST:PORT"),
    (["--coordinator_address=no-such-host.invalid:1234"], "cannot be resolved"),
    (["--coordinator_address=localhost:1234", "--coordinator_timeout=0"], "--coordinator_timeout=0"),
    (["--process_id=2"], "--process_id=2"),
]


@pytest.mark.parametrize("args,words", MULTI_HOST, ids=[" ".join(a) for a, _ in MULTI_HOST])
def test_bad_multi_host_flags_are_one_line(args, words, tmp_path, weights_path, capsys):
    out = tmp_path / "out"
    before = listing(tmp_path)
    code, stderr = in_process(["--num_processes=2", f"--weights={weights_path}", f"--output_dir={out}", *args],
                              capsys)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("error: --") and words in lines[0], lines[0]
    assert listing(tmp_path) == before


@pytest.mark.parametrize("process_id,words", [(1, "no coordinator answers at"), (0, "not all 2 processes joined")],
                         ids=["worker without coordinator", "coordinator without workers"])
def test_processes_that_never_meet_stop_at_the_timeout_with_one_line(process_id, words, tmp_path, cli_env):
    """jax.distributed aborts the process (SIGABRT, a C++ stack) at its deadline: the CLI stops first."""
    out = tmp_path / "out"
    began = time.monotonic()
    result = subprocess.run([sys.executable, RUN_PY, f"--coordinator_address=127.0.0.1:{free_port()}",
                             "--num_processes=2", f"--process_id={process_id}", "--coordinator_timeout=2",
                             f"--output_dir={out}", "--size=32"], cwd=tmp_path, env=cli_env, capture_output=True,
                            text=True, timeout=120)
    assert time.monotonic() - began < 60
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2, result.stderr
    assert last.startswith("error: ") and words in last and "--coordinator_timeout=2 s" in last, result.stderr
    assert "Traceback" not in result.stderr and "Check failure" not in result.stderr
    assert not out.exists()


def test_empty_output_dir_is_refused_by_name(tmp_path, weights_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, stderr = in_process(["--output_dir=", f"--weights={weights_path}", "--size=32", "--iterations=1"], capsys)
    last = stderr.strip().splitlines()[-1]
    assert code == 2 and last == "error: --output_dir is empty; name the folder for the outputs, e.g. --output_dir=out"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error,fix", [
    (errno.ENOSPC, "free some space"), (errno.EACCES, "a folder you can write to"),
    (errno.EROFS, "a folder you can write to"), (errno.ENAMETOOLONG, "check that path"),
])
def test_a_failed_write_names_its_real_cause(error, fix):
    line = cli.write_error(OSError(error, "the system's reason", "out/x.png"))
    assert line.startswith("cannot write out/x.png (the system's reason); ") and fix in line
    assert ("free some space" in line) == (error == errno.ENOSPC)


def test_helpshort_of_the_texsynth_command_lists_its_flags(tmp_path, cli_env):
    """The console script's main module is not cli.py: --helpshort must still list cli.py's flags."""
    code = "import sys; sys.argv[0] = 'texsynth'; from texsynth_jax.cli import run; run()"
    for command in ([sys.executable, "-c", code, "--helpshort"], [sys.executable, RUN_PY, "--helpshort"]):
        result = subprocess.run(command, cwd=tmp_path, env=dict(cli_env, PYTHONPATH=REPO),
                                capture_output=True, text=True, timeout=120)
        for flag in ("paper", "imports", "coordinator_timeout", "coarse_iterations", "output_dir"):
            assert re.search(rf"--(\[no\])?{flag}:", result.stdout), (command, result.stdout[-2000:], result.stderr)
    assert list(tmp_path.iterdir()) == []
