"""Speed of one L-BFGS iteration (loss + gradient w.r.t. the image) in JAX and in PyTorch, side by side.

    python bench/speed.py                       # 128 and 256 px, batch 1 and 4, fp32 and bf16
    python bench/speed.py --quick               # a one-minute look: 64 px, batch 1, one repeat
    python bench/speed.py --smoke               # seconds: 32 px, fp32, checks the script works
    python bench/speed.py --sizes 256 --batches 1 --precision fp32 --conv lax,winograd

Both frameworks run the same algorithm with the same weights (the converted VGG file, as torch
tensors for PyTorch): VGG convs + ReLU, 2x2 average pooling up to pool4, Gram / M, loss
sum((G - A)^2) / (4 N^2) over conv1_1, pool1..pool4, and the gradient w.r.t. the image. The
timings are interleaved in one process (JAX, then PyTorch, then JAX again, ...) so that the load
of a shared machine falls on both alike; the table gives medians and the ratios of medians.

Columns:
  jax step: one `Engine.step` call (one L-BFGS iteration of the whole batch: direction,
    line search (normally one loss evaluation), memory update), after --warmup untimed
    iterations; evals/iter is the loss evaluations per seed per timed iteration.
  jax v&g: one jitted, vmapped `jax.value_and_grad(texture_loss)` on the batch.
  torch fp32 / torch bf16: `loss.backward()` on the batch, fp32 in NCHW and in channels-last
    (NHWC) layout; the ratios use the faster of the two. bf16: torch.autocast("cpu", bfloat16),
    channels-last, Grams and loss in float32; timed only up to --torch-bf16-max-size, because
    on a CPU without AVX512_BF16 PyTorch's bf16 convolutions are orders of magnitude slower.
  compile: the first `Engine.step` call (trace + XLA compile + one iteration), and of v&g.
  peak MiB: memory of one configuration run alone in a fresh subprocess: the growth of the
    process's peak RSS (ru_maxrss) from after imports and weight loading to after compile + two
    iterations (PyTorch: fp32, channels-last); for JAX also XLA's account of the compiled step
    (Engine.step_memory_bytes: arguments, outputs and temporaries).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from common import (SMOKE_SIZE, CompileCounter, add_smoke_arg, add_weights_arg, cpu_flags, cpu_model, network,
                    weights_path)


def test_images(size: int, batch: int):
    """A smooth random source [H, W, 3] and a batch of start images [B, H, W, 3], float32 in [0, 1]."""
    rng = np.random.default_rng(0)
    coarse = rng.random((size // 8 + 2, size // 8 + 2, 3))
    source = np.kron(coarse, np.ones((8, 8, 1)))[:size, :size] * 0.7 + 0.3 * rng.random((size, size, 3))
    images = 0.5 + 0.1 * rng.standard_normal((batch, size, size, 3))
    return source.astype(np.float32), np.clip(images, 0, 1).astype(np.float32)


class JaxCase:
    """One JAX configuration: an Engine, its state and targets, and a jitted loss + gradient, compiled on creation."""

    def __init__(self, params, spec, size, batch, precision, conv, network):
        import jax
        import texsynth_jax as ts
        from texsynth_jax import synthesis

        self.jax, self.synthesis = jax, synthesis
        self.config = ts.SynthesisConfig(size=(size, size), precision=precision, conv=conv, coarse_iterations=(),
                                          padding="zero", **network)  # one scale, padded as the PyTorch baseline pads
        self.engine = ts.Engine(params, spec, self.config, batch)
        source, images = test_images(size, batch)
        self.targets = jax.block_until_ready(self.engine.targets(source))
        self.keys = jax.random.split(jax.random.key(0), batch)
        self.state = jax.block_until_ready(self.engine.init(self.keys, self.targets))
        config = self.config
        self.value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(
            lambda image, targets, params: ts.texture_loss(image, targets, params, spec, config)),
            in_axes=(0, None, None)))
        self.images = jax.device_put(images)
        t0 = time.perf_counter()
        self.step()
        self.compile_step = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.vg()
        self.compile_vg = time.perf_counter() - t0

    def step(self):
        self.state, loss = self.engine.step(self.state, self.targets)
        self.jax.block_until_ready(loss)

    def vg(self):
        self.jax.block_until_ready(self.value_and_grad(self.images, self.targets, self.engine.params))

    def evals(self) -> int:
        """Loss evaluations so far, summed over the batch (L-BFGS line-search trials included)."""
        return int(self.jax.device_get(self.synthesis.evaluations(self.state, self.config)).sum())

    def fresh_seeds(self):
        """One iteration from a new batch of seeds (it must reuse the compiled programs)."""
        state = self.engine.init(self.jax.random.split(self.jax.random.key(1), len(self.keys)), self.targets)
        state, _ = self.engine.step(state, self.targets)
        self.jax.block_until_ready(state)


class TorchCase:
    def __init__(self, params, spec, size, batch, precision, layers, channels_last, device="cpu"):
        import torch
        from torch_baseline import TorchGatys

        self.torch = torch
        self.model = TorchGatys(params, spec, layers, (1.0,) * len(layers), precision, channels_last, device)
        source, images = test_images(size, batch)
        self.model.set_targets(torch.from_numpy(source).permute(2, 0, 1).contiguous())
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
        t0 = time.perf_counter()
        self.step()
        self.compile_step = time.perf_counter() - t0

    def step(self):
        self.model.loss_and_grad(self.images)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def probe_memory(args) -> dict:
    """Run one configuration alone (in this fresh process) and return its memory figures."""
    framework, size, batch, precision, conv = args.probe.split(":")
    size, batch = int(size), int(batch)
    from texsynth_jax import load_weights, SynthesisConfig
    params, spec, _ = load_weights(weights_path(args.weights))
    if framework == "jax":
        import jax  # noqa: F401  (imported before the baseline RSS is taken)
    else:
        import torch
        torch.set_num_threads(os.cpu_count())
    before = rss_mib()
    result = {}
    if framework == "jax":
        case = JaxCase(params, spec, size, batch, precision, conv, {})
        case.step()
        result["xla_step_mib"] = case.engine.step_memory_bytes() / 2**20
    else:
        case = TorchCase(params, spec, size, batch, precision, SynthesisConfig().layers, True)
        case.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result["peak_growth_mib"] = peak - before
    return result


def run_probe(args, framework, size, batch, precision, conv) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--probe",
           f"{framework}:{size}:{batch}:{precision}:{conv}"]
    if args.weights:
        cmd += ["--weights", args.weights]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_ms(times):
    return 1000 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="128,256", help="comma-separated image sizes (square)")
    parser.add_argument("--batches", default="1,4", help="comma-separated batch sizes (seeds)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each program")
    parser.add_argument("--precision", default="fp32,bf16", help="JAX precisions: fp32, bf16 or both")
    parser.add_argument("--conv", default="auto", help="JAX conv strategies (comma-separated; auto = "
                        "conv.DEFAULTS for this backend)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed L-BFGS iterations first (the first ones backtrack more)")
    parser.add_argument("--torch-bf16-max-size", type=int, default=128,
                        help="time PyTorch bf16 only up to this size (it is very slow on CPUs without "
                        "AVX512_BF16)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--torch-device", default="cpu", help="PyTorch's device: cpu, or cuda (cuDNN) beside JAX "
                        "on the GPU")
    parser.add_argument("--json", default=None, help="also write the rows here (JSON)")
    add_weights_arg(parser)
    parser.add_argument("--quick", action="store_true", help="a short look: 64 px, batch 1, 1 repeat, no memory")
    add_smoke_arg(parser)
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.probe:
        print(json.dumps(probe_memory(args)))
        return
    if args.quick:
        args.sizes, args.batches, args.repeats, args.no_memory = "64", "1", 1, True
    if args.smoke:
        args.sizes, args.batches, args.repeats, args.precision, args.warmup = str(SMOKE_SIZE), "1", 1, "fp32", 1
        args.no_memory, args.torch_bf16_max_size = True, 0

    import jax
    import torch
    from texsynth_jax import conv as conv_lib, load_weights, SynthesisConfig

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    precisions = args.precision.split(",")
    convs = args.conv.split(",")
    backend = jax.default_backend()
    cpu = cpu_model()
    params, spec, _ = load_weights(weights_path(args.weights))
    layers = SynthesisConfig(**network(args)).layers
    flags = cpu_flags()
    print(f"# CPU: {cpu} ({flags}); {threads} threads; JAX {jax.__version__} ({backend}), "
          f"PyTorch {torch.__version__}; auto conv on {backend} = "
          f"{conv_lib.name('auto', backend)}; medians of {args.repeats}", flush=True)

    rows = []
    for size in sizes:
        for batch in batches:
            jax_cases = {}
            for precision in precisions:
                for conv in convs:
                    jax_cases[(precision, conv)] = JaxCase(params, spec, size, batch, precision, conv, network(args))
            device = args.torch_device
            torch_cases = {("fp32", "nchw"): TorchCase(params, spec, size, batch, "fp32", layers, False, device),
                           ("fp32", "nhwc"): TorchCase(params, spec, size, batch, "fp32", layers, True, device)}
            if size <= args.torch_bf16_max_size or device != "cpu":
                torch_cases[("bf16", "nhwc")] = TorchCase(params, spec, size, batch, "bf16", layers, True, device)
            for case in jax_cases.values():
                for _ in range(args.warmup):
                    case.step()
            compiles = CompileCounter()
            evals = {key: case.evals() for key, case in jax_cases.items()}
            times = {}
            for _ in range(args.repeats):  # interleaved: every program once per round
                for key, case in jax_cases.items():
                    for what, fn in (("step", case.step), ("vg", case.vg)):
                        t0 = time.perf_counter()
                        fn()
                        times.setdefault((key, what), []).append(time.perf_counter() - t0)
                for precision, case in torch_cases.items():
                    t0 = time.perf_counter()
                    case.step()
                    times.setdefault(("torch", precision), []).append(time.perf_counter() - t0)
            evals = {key: (case.evals() - evals[key]) / (args.repeats * batch)
                     for key, case in jax_cases.items()}
            for case in jax_cases.values():
                case.fresh_seeds()
            recompiles = compiles.count
            torch_ms = {key: median_ms(times[("torch", key)]) for key in torch_cases}
            torch_fp32 = min(torch_ms[("fp32", "nchw")], torch_ms[("fp32", "nhwc")])
            torch_bf16 = torch_ms.get(("bf16", "nhwc"), float("nan"))
            memory = {}
            if not args.no_memory:
                for p in ("fp32",):
                    memory[("torch", p)] = run_probe(args, "torch", size, batch, p, "-")
            for (precision, conv), case in jax_cases.items():
                step_ms = median_ms(times[((precision, conv), "step")])
                vg_ms = median_ms(times[((precision, conv), "vg")])
                mem = "" if args.no_memory else run_probe(args, "jax", size, batch, precision, conv)
                rows.append(dict(
                    size=size, batch=batch, precision=precision,
                    conv=conv_lib.name(conv, backend) + (" (auto)" if conv == "auto" else ""),
                    step_ms=step_ms, vg_ms=vg_ms, evals=evals[(precision, conv)],
                    torch_nchw_ms=torch_ms[("fp32", "nchw")], torch_nhwc_ms=torch_ms[("fp32", "nhwc")],
                    torch_fp32_ms=torch_fp32, torch_bf16_ms=torch_bf16,
                    compile_step_s=case.compile_step, compile_vg_s=case.compile_vg,
                    recompiles=recompiles, memory=mem, torch_memory=memory))
                print(f"# done {size} px batch {batch} {precision} {conv}: step {step_ms:.0f} ms, "
                      f"torch fp32 {torch_fp32:.0f} ms", flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu, "backend": backend, "devices": [str(d) for d in jax.devices()],
                       "torch_device": args.torch_device, "jax": jax.__version__, "torch": torch.__version__,
                       "rows": [{k: v for k, v in r.items() if k not in ("memory", "torch_memory")} for r in rows]},
                      f, indent=1)
    print()
    print(f"CPU: {cpu} ({flags}; {threads} threads); JAX on {backend} ({jax.devices()[0].device_kind}), PyTorch "
          f"on {args.torch_device}. Times are ms per call on the whole batch (one L-BFGS iteration of every seed); "
          "ratios are JAX step / PyTorch.")
    print()
    header = ["size", "batch", "jax precision", "conv", "jax step ms", "evals/iter", "jax v&g ms",
              "torch fp32 ms (NCHW; NHWC)", "torch bf16 ms", "step / torch fp32", "v&g / torch fp32",
              "step / torch bf16", "jax compile s (step, v&g)", "recompiles"]
    if not args.no_memory:
        header += ["jax peak MiB (RSS growth; XLA step)", "torch fp32 peak MiB (RSS growth)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [r["size"], r["batch"], r["precision"], r["conv"], f"{r['step_ms']:.0f}",
                 f"{r['evals']:.2f}", f"{r['vg_ms']:.0f}",
                 f"{r['torch_nchw_ms']:.0f}; {r['torch_nhwc_ms']:.0f}", f"{r['torch_bf16_ms']:.0f}",
                 f"{r['step_ms'] / r['torch_fp32_ms']:.2f}", f"{r['vg_ms'] / r['torch_fp32_ms']:.2f}",
                 f"{r['step_ms'] / r['torch_bf16_ms']:.2f}",
                 f"{r['compile_step_s']:.1f}, {r['compile_vg_s']:.1f}", r["recompiles"]]
        if not args.no_memory:
            m, tm = r["memory"], r["torch_memory"]
            cells.append(f"{m.get('peak_growth_mib', float('nan')):.0f}; {m.get('xla_step_mib', float('nan')):.0f}"
                         if "error" not in m else m["error"])
            cells.append(f"{tm[('torch', 'fp32')].get('peak_growth_mib', float('nan')):.0f}")
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
