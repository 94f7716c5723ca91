"""gs:// paths against a real GCS emulator (gcp-storage-emulator, started and stopped here on a free port): the
storage layer itself, a whole job from a bucket into a bucket killed and resumed from its checkpoints there,
and a bucket that cannot be written. No mock of the storage client: gcsfs talks HTTP to the emulator."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from test_run import RUN_PY, SHALLOW, cli, cli_env, in_process  # noqa: F401 (cli_env is a fixture)
from texsynth_jax import storage

BUCKET = "texsynth-tests"
# gcsfs reads these when it is imported: no credentials for the emulator, and no look-up of zonal buckets at
# Google's endpoint (it hangs without the internet).
CLIENT_ENV = {"FSSPEC_GCS_TOKEN": "anon", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


@pytest.fixture(scope="module")
def gcs():
    """The emulator's address, with this process (and the subprocesses given `env`) pointed at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    exe = os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator")
    proc = subprocess.Popen([exe, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory",
                             f"--default-bucket={BUCKET}", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in [*CLIENT_ENV, "STORAGE_EMULATOR_HOST"]}
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "the GCS emulator did not start"
                time.sleep(0.05)
        os.environ.update(CLIENT_ENV, STORAGE_EMULATOR_HOST=url)
        import fsspec

        fsspec.config.conf.setdefault("gcs", {})["token"] = "anon"  # if fsspec was imported before the env var
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def upload_image(url, seed, size=40):
    rng = np.random.default_rng(seed)
    with storage.writer(url) as f:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(f, format="PNG")
    return url


def read_png(path):
    with storage.opened(path) as f, Image.open(f) as img:
        return np.asarray(img)


def test_storage_reads_writes_lists_and_never_leaves_half_an_object(gcs):
    folder = f"gs://{BUCKET}/unit"
    storage.write_bytes(storage.join(folder, "a.txt"), b"one")
    assert storage.read_bytes(f"{folder}/a.txt") == b"one" and storage.isfile(f"{folder}/a.txt")
    assert storage.isdir(folder) and storage.listdir(folder) == ["a.txt"]
    with pytest.raises(RuntimeError):  # a write that fails halfway uploads nothing
        with storage.writer(f"{folder}/b.txt") as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert not storage.exists(f"{folder}/b.txt") and storage.listdir(folder) == ["a.txt"]
    with pytest.raises(OSError, match="no-such-bucket"):  # the store's error as an OSError naming the object
        storage.write_bytes("gs://no-such-bucket/x.txt", b"x")
    storage.remove(f"{folder}/a.txt")
    storage.remove(f"{folder}/a.txt")  # missing: not an error
    assert not storage.exists(f"{folder}/a.txt")
    assert storage.parent(f"{folder}/a.txt") == folder and storage.basename(f"{folder}/a.txt") == "a.txt"


def test_a_job_from_a_bucket_into_a_bucket_is_killed_and_resumes_from_its_checkpoints_there(
        tmp_path, gcs, cli_env, weights_path):
    """Sources read from gs://, every output and checkpoint written there; kill -9 after a checkpoint, then
    --resume continues from the bucket's checkpoint to the images of an uninterrupted local run, bit for bit."""
    env = dict(cli_env, **CLIENT_ENV, STORAGE_EMULATOR_HOST=gcs)
    inputs, out = f"gs://{BUCKET}/job/in", f"gs://{BUCKET}/job/out"
    local_in = tmp_path / "in"
    local_in.mkdir()
    upload_image(f"{inputs}/a.png", 0)
    (local_in / "a.png").write_bytes(storage.read_bytes(f"{inputs}/a.png"))
    args = [f"--weights={weights_path}", "--size=32", "--seeds=2", "--coarse_iterations=", "--iterations=6",
            "--log_every=1", "--judge=false", SHALLOW]
    straight = cli([*args, f"--input={local_in}", f"--output_dir={tmp_path / 'straight'}"], env, tmp_path)
    assert straight.returncode == 0, straight.stderr

    proc = subprocess.Popen([sys.executable, RUN_PY, *args, f"--input={inputs}", f"--output_dir={out}",
                             "--checkpoint_every=1"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines, deadline = [], time.time() + 240
    for line in proc.stderr:
        lines.append(line)
        if re.match(rf"checkpoint: iteration 2/6 -> {out}/a_ckpt.npz", line) or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and storage.exists(f"{out}/a_ckpt.npz"), "".join(lines)
    assert not storage.exists(f"{out}/a_run.json")  # killed before its end: no record yet

    resumed = cli([*args, f"--input={inputs}", f"--output_dir={out}", "--resume"], env, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(rf"resuming from {out}/a_ckpt.npz at iteration [2-5]\b", resumed.stderr), resumed.stderr
    assert "object store, which has no file locks" in resumed.stderr
    for name in ("a_seed0.png", "a_seed1.png"):
        np.testing.assert_array_equal(read_png(f"{out}/{name}"), np.asarray(Image.open(tmp_path / "straight" / name)))
    record = json.loads(storage.read_bytes(f"{out}/a_run.json"))
    assert record["status"] == "complete" and record["input"]["path"] == f"{inputs}/a.png"
    assert record["loss_history"] == json.loads((tmp_path / "straight" / "a_run.json").read_text())["loss_history"]
    names = storage.listdir(out)
    assert not any(n.endswith("_ckpt.npz") or n.startswith((".tmp-", ".texsynth-probe")) for n in names), names

    # A rerun skips the source by its record in the bucket.
    again = cli([*args, f"--input={inputs}", f"--output_dir={out}", "--resume"], env, tmp_path)
    assert again.returncode == 0 and again.stderr.count("already done") == 1, again.stderr


def test_a_bucket_that_cannot_be_written_or_read_is_one_line_before_any_work(tmp_path, gcs, capsys, weights_path):
    out, tiny = tmp_path / "local_out", [f"--weights={weights_path}", "--size=32", "--coarse_iterations="]
    source = upload_image(f"gs://{BUCKET}/errors/src.png", 0)
    code, err = in_process([f"--input={source}", "--output_dir=gs://no-such-bucket/out", *tiny], capsys)
    last = err.splitlines()[-1]
    assert code == 2 and err.count("error:") == 1, err
    assert last.startswith("error: --output_dir=gs://no-such-bucket/out cannot be written") and "bucket" in last, err
    code, err = in_process([f"--input=gs://{BUCKET}/errors/missing.png", f"--output_dir={out}", *tiny], capsys)
    assert code == 2 and err.splitlines()[-1] == (f"error: input image gs://{BUCKET}/errors/missing.png not found; "
                                                  "check the path given to --input"), err
    assert not out.exists()
