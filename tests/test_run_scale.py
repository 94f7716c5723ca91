"""run.py at scale: a run preempted by SIGTERM and then killed by SIGKILL resumes to the uninterrupted result;
two processes through jax.distributed split a batch job between them without overlap."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from test_run import RUN_PY, SHALLOW, cli, cli_env  # noqa: F401 (cli_env is a fixture)


def make_image(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    return str(path)


def outputs_of(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def test_preempted_then_killed_run_resumes_to_the_uninterrupted_result(tmp_path, cli_env, weights_path):
    """SIGTERM (a preemption notice) at a random iteration, then a resumed run killed by SIGKILL after a later
    checkpoint, then a second resume: the same images and losses as an uninterrupted run, bit for bit."""
    source = make_image(tmp_path / "src.png", 0)
    args = [f"--input={source}", f"--weights={weights_path}", "--size=32", "--seeds=2", "--coarse_iterations=",
            "--iterations=10", "--log_every=1", "--judge=false", SHALLOW]
    straight = cli([*args, f"--output_dir={tmp_path / 'straight'}"], cli_env, tmp_path)
    assert straight.returncode == 0, straight.stderr
    out, deadline = tmp_path / "out", time.time() + 240
    ckpt = out / "src_ckpt.npz"

    # Without --checkpoint_every, SIGTERM still leaves a checkpoint (and the images reached).
    at = random.randrange(1, 6)
    proc = subprocess.Popen([sys.executable, RUN_PY, *args, f"--output_dir={out}"], cwd=tmp_path, env=cli_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if re.match(rf"iteration +{at}/", line) or time.time() > deadline:
            proc.send_signal(signal.SIGTERM)
    proc.wait()
    stderr = "".join(lines)
    assert proc.returncode == 75, f"SIGTERM at iteration {at}:\n{stderr}"
    assert stderr.strip().splitlines()[-1].startswith("preempted (SIGTERM) at iteration"), stderr
    record = json.loads((out / "src_run.json").read_text())
    done = record["iterations_done"]
    assert record["status"] == "preempted" and at <= done < 10, (at, done)
    assert ckpt.is_file() and (out / "src_seed0.png").is_file()

    # Resumed, then kill -9 once a checkpoint past the resume point is on disk.
    proc = subprocess.Popen([sys.executable, RUN_PY, *args, f"--output_dir={out}", "--resume", "--checkpoint_every=2"],
                            cwd=tmp_path, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        saved = re.match(r"checkpoint: iteration (\d+)", line)
        if (saved and int(saved[1]) > done) or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and f"resuming from {ckpt} at iteration {done}" in "".join(lines), lines
    assert json.loads((out / "src_run.json").read_text())["status"] == "preempted"  # the record is still the old one

    resumed = cli([*args, f"--output_dir={out}", "--resume"], cli_env, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    for name in ("src_seed0.png", "src_seed1.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "straight" / name)),
                                      np.asarray(Image.open(out / name)))
    straight_record = json.loads((tmp_path / "straight" / "src_run.json").read_text())
    resumed_record = json.loads((out / "src_run.json").read_text())
    assert resumed_record["status"] == "complete"
    assert resumed_record["loss_history"] == straight_record["loss_history"]  # bit-identical floats
    assert not ckpt.exists()  # a finished source needs no checkpoint


def free_port(low: int = 1024, high: int = 65535) -> int:
    for port in random.sample(range(low, high + 1), 200):
        with socket.socket() as s:
            try:
                s.bind(("localhost", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}..{high}")


# Slurm's coordinator port as JAX's cluster detection derives it from the job id (jax/_src/clusters/slurm_cluster.py).
SLURM_PORTS = 65536 - 2 ** 12


def test_two_processes_split_a_batch_job(tmp_path, cli_env, weights_path):
    """Process 0 is told the cluster by flags; process 1 finds it by JAX's own detection (a Slurm job's variables,
    as `srun` sets them), the way a Cloud TPU slice's hosts find theirs: both ways join one job."""
    job = tmp_path / "job.txt"
    job.write_text(f"{make_image(tmp_path / 'a.png', 1)} 3\n{make_image(tmp_path / 'b.png', 2)} 0,5\n")
    out = tmp_path / "out"
    port = free_port(SLURM_PORTS)
    common = [sys.executable, RUN_PY, f"--input={job}", f"--weights={weights_path}", "--size=32",
              "--coarse_iterations=", "--iterations=2", SHALLOW, "--judge=false", f"--output_dir={out}"]
    slurm = dict(cli_env, SLURM_JOB_ID=str(port - SLURM_PORTS), SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2",
                 SLURM_PROCID="1", SLURM_LOCALID="0")
    procs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for command, env in (([*common, f"--coordinator_address=localhost:{port}", "--num_processes=2",
                                    "--process_id=0"], cli_env), (common, slurm))]
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
    assert "joining the slurm cluster that jax detects" in logs[1], logs[1]
