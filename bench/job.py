"""Batch jobs through run.py: seconds per source before and after the engine, and host memory against sources.

    python bench/job.py                                  # the README table (about 30 min on 2 cores)
    python bench/job.py --sources 4 --iterations 5 --memory-sources 10,20     # a smoke run

Timing: a job of --sources sources (crops of ../shared/textures when present, else noise images) at
--size px, --iterations iterations, one seed each, run by this checkout's run.py ("after") and by
run.py of git revision --before ("before", extracted with `git archive` into a temp folder), one
after the other for each device count (8 devices: JAX_NUM_CPU_DEVICES=8 virtual CPU devices, seeds
padded to 8). Seconds per source = the job's wall time / sources, JAX start-up and weights included.

Memory: peak RSS of run.py (this checkout) on jobs of --memory-sources sources of 512 px, 32 px
output, 1 iteration: it must not grow with the number of sources (sources are decoded one at a time).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import TEXTURES, cpu_flags, cpu_model, load_average, weights_path  # noqa: E402


def make_sources(folder, count, size):
    """`count` images of size x size: crops of the shared texture photos, else noise."""
    os.makedirs(folder, exist_ok=True)
    photos = sorted(os.path.join(TEXTURES, n) for n in os.listdir(TEXTURES) if n.endswith(".png")) \
        if os.path.isdir(TEXTURES) else []
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        if photos:
            with Image.open(photos[i % len(photos)]) as img:
                img = img.convert("RGB")
                scale = max(size / min(img.size), 1.0)
                img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))))
                x, y = rng.integers(0, img.width - size + 1), rng.integers(0, img.height - size + 1)
                img = img.crop((x, y, x + size, y + size))
        else:
            img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        path = os.path.join(folder, f"s{i:04d}.png")
        img.save(path)
        paths.append(path)
    return folder


def run(repo, args, devices):
    """Wall seconds and peak RSS (MiB) of one run.py process."""
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, os.path.join(repo, "run.py"), *args], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    stderr = proc.stderr.read()
    if status != 0:
        sys.exit(f"run.py in {repo} failed:\n{stderr[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--devices", default="1,8")
    parser.add_argument("--mesh-iterations", type=int, default=5,
                        help="iterations for device counts above 1 (their seeds are padded to the device count)")
    parser.add_argument("--before", default="10a567c", help="git revision of the code before the engine")
    parser.add_argument("--memory-sources", default="20,200")
    args = parser.parse_args()

    weights = os.path.abspath(weights_path(None))
    work = tempfile.mkdtemp(prefix="bench_job_")
    before = os.path.join(work, "before")
    os.makedirs(before)
    subprocess.run(f"git -C {ROOT} archive {args.before} | tar -x -C {before}", shell=True, check=True)
    sources = make_sources(os.path.join(work, "sources"), args.sources, 256)
    common = [f"--input={sources}", f"--weights={weights}", f"--size={args.size}", "--seeds=1", "--log_every=1000"]
    print(f"{cpu_model()} ({cpu_flags()}), {os.cpu_count()} cores, load average before: "
          f"{load_average()}", flush=True)
    rows = []
    for devices in [int(d) for d in args.devices.split(",")]:
        iterations = args.iterations if devices == 1 else args.mesh_iterations
        for label, repo in (("before", before), ("after", ROOT)):
            out = os.path.join(work, f"out_{label}_{devices}")
            seconds, rss = run(repo, [*common, f"--iterations={iterations}", f"--output_dir={out}"], devices)
            rows.append((devices, iterations, label, seconds / args.sources, rss))
            print(f"  {devices} device(s), {iterations} iterations, {label}: {seconds:.0f}s for {args.sources} "
                  f"sources; load average {load_average()}", flush=True)
    print(f"\n{args.sources} sources, {args.size} px, 1 seed each (several devices: padded to the device "
          f"count); load average after: {load_average()}\n")
    print("| devices | iterations | code | s per source | speed-up | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for devices, iterations, label, per_source, rss in rows:
        base = next(r[3] for r in rows if r[0] == devices and r[2] == "before")
        print(f"| {devices} | {iterations} | {label} | {per_source:.1f} | {base / per_source:.2f}x | {rss:.0f} |")

    print("\nPeak host memory against the number of sources (this checkout, 512 px sources, 32 px, 1 iteration):\n")
    print("| sources | peak RSS MiB | s per source |")
    print("|---|---|---|")
    for count in [int(c) for c in args.memory_sources.split(",")]:
        folder = make_sources(os.path.join(work, f"mem{count}"), count, 512)
        seconds, rss = run(ROOT, [f"--input={folder}", f"--weights={weights}", "--size=32", "--seeds=1",
                                  "--iterations=1", f"--output_dir={os.path.join(work, f'mem_out{count}')}"], 1)
        print(f"| {count} | {rss:.0f} | {seconds / count:.2f} |", flush=True)


if __name__ == "__main__":
    main()
