"""run.py at scale: a SIGKILLed run resumes to the uninterrupted result; two processes through
jax.distributed split a batch job between them without overlap."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from test_run import RUN_PY, cli, cli_env  # noqa: F401 (cli_env is a fixture)


def make_image(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    return str(path)


def outputs_of(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, cli_env, weights_path):
    source = make_image(tmp_path / "src.png", 0)
    args = [f"--input={source}", f"--weights={weights_path}", "--size=32", "--seeds=2", "--coarse_iterations=",
            "--iterations=10",
            "--checkpoint_every=2", "--log_every=1"]
    straight = cli([*args, f"--output_dir={tmp_path / 'straight'}"], cli_env, tmp_path)
    assert straight.returncode == 0, straight.stderr

    killed_dir = tmp_path / "killed"
    ckpt = killed_dir / "src_ckpt.npz"
    proc = subprocess.Popen([sys.executable, RUN_PY, *args, f"--output_dir={killed_dir}"], cwd=tmp_path,
                            env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    for line in proc.stderr:  # kill -9 once a checkpoint past the start is on disk
        if line.startswith("checkpoint: iteration 4") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert ckpt.is_file() and not (killed_dir / "src_seed0.png").exists()

    resumed = cli([*args, f"--output_dir={killed_dir}", "--resume"], cli_env, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    for name in ("src_seed0.png", "src_seed1.png"):
        a = np.asarray(Image.open(tmp_path / "straight" / name))
        b = np.asarray(Image.open(killed_dir / name))
        np.testing.assert_array_equal(a, b)
    straight_record = json.loads((tmp_path / "straight" / "src_run.json").read_text())
    resumed_record = json.loads((killed_dir / "src_run.json").read_text())
    assert resumed_record["loss_history"] == straight_record["loss_history"]  # bit-identical floats
    assert not ckpt.exists()  # a finished source needs no checkpoint


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_split_a_batch_job(tmp_path, cli_env, weights_path):
    job = tmp_path / "job.txt"
    job.write_text(f"{make_image(tmp_path / 'a.png', 1)} 3\n{make_image(tmp_path / 'b.png', 2)} 0,5\n")
    out = tmp_path / "out"
    port = free_port()
    procs = [subprocess.Popen(
        [sys.executable, RUN_PY, f"--input={job}", f"--weights={weights_path}", "--size=32", "--coarse_iterations=",
         "--iterations=2",
         f"--output_dir={out}", f"--coordinator_address=localhost:{port}", "--num_processes=2",
         f"--process_id={i}"], cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(2)]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    seeds = sorted(n for n in outputs_of(out) if "_seed" in n)
    assert seeds == ["a_seed0.png", "a_seed1.png", "a_seed2.png", "b_seed0.png", "b_seed5.png"]
    # Each host recorded only its own seeds, and together they hold every seed once.
    records = [json.loads((out / n).read_text()) for n in outputs_of(out) if n.endswith(".json")]
    pairs = [(r["input"]["path"], s) for r in records for s in r["seeds"]]
    assert len(pairs) == len(set(pairs)) == 5
    # Only process 0 prints the summary lines.
    assert "done" in logs[0] and "done" not in logs[1]
