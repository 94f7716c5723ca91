"""Where a step's time goes on this machine: every VGG convolution timed alone against its FLOPs, in JAX (each
convolution strategy) and PyTorch, then one whole loss + gradient split by kind of operation (jax.profiler).

    python bench/profile.py                        # 256 px, batch 1, strategies lax and winograd4; ~4 minutes
    python bench/profile.py --size 128 --batch 4 --conv lax,winograd,winograd4
    python bench/profile.py --smoke                # seconds: 32 px, lax, one round

Table 1, per convolution of VGG-16 up to pool4 (the layers the default loss reaches): its forward FLOPs
(2 H W 9 Cin Cout per image; the gradient w.r.t. the input costs the same again), and the median ms of one
forward + input-gradient pass (`jax.grad` of sum(relu(conv) * cotangent) w.r.t. the input; PyTorch:
conv2d and convolution_backward for the input only, channels-last), with the GFLOP/s that makes. The rounds
interleave every implementation, so the load of a shared machine falls on all alike.

Table 2, per strategy: one jitted, vmapped `value_and_grad(texture_loss)` (the work of an L-BFGS iteration)
traced with jax.profiler: the time XLA's thunks spend in forward and backward convolutions, matrix
products (the Grams and their gradients), reductions and elementwise fusions (bias, ReLU, pooling, their
gradients, layout copies; Winograd's products and tile transforms count as matrix products and
elementwise), summed over both threads, per call; and the call's wall time. The floor is
the FLOPs of the convolutions at the machine's peak (--peak GFLOP/s; 2 cores x 2 FMA units x 8 floats x
2 x ~3 GHz for AVX2 without AVX-512).
"""

import argparse
import collections
import glob
import os
import re
import statistics
import tempfile
import time

from common import SMOKE_SIZE, add_smoke_arg, add_weights_arg, load_average, load_weights, machine, network

# VGG-16 up to conv4_3: (name, rows of the square map at --size 256 divided by, Cin, Cout).
LAYERS = [("conv1_1", 1, 3, 64), ("conv1_2", 1, 64, 64), ("conv2_1", 2, 64, 128), ("conv2_2", 2, 128, 128),
          ("conv3_1", 4, 128, 256), ("conv3_2", 4, 256, 256), ("conv3_3", 4, 256, 256),
          ("conv4_1", 8, 256, 512), ("conv4_2", 8, 512, 512), ("conv4_3", 8, 512, 512)]


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def layer_programs(size: int, batch: int, strategies):
    """{layer: {implementation: zero-argument callable}} for one forward + input-gradient pass each."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from texsynth_jax import conv as conv_lib

    programs = {}
    for name, down, cin, cout in LAYERS:
        h = size // down
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, h, h, cin), dtype=np.float32)
        kernel = (rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin)).astype(np.float32)
        ct = rng.standard_normal((batch, h, h, cout), dtype=np.float32)
        row = {}
        for strategy in strategies:
            conv = conv_lib.STRATEGIES[strategy]
            grad = jax.jit(jax.vmap(jax.grad(lambda x, k, c, conv=conv: jnp.sum(jax.nn.relu(conv(x, k)) * c)),
                                    in_axes=(0, None, 0)))
            args = tuple(map(jnp.asarray, (x, kernel, ct)))
            row[strategy] = lambda g=grad, a=args: jax.block_until_ready(g(*a))
        tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        tk = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
        tct = torch.from_numpy(ct).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

        def torch_pass(tx=tx, tk=tk, tct=tct):
            y = torch.nn.functional.conv2d(tx, tk, padding=1)
            grad_y = tct * (y > 0)
            torch.ops.aten.convolution_backward(grad_y, tx, tk, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                [True, False, False])
        row["torch"] = torch_pass
        programs[name] = row
        for fn in row.values():  # compile / warm up
            fn()
    return programs


def layer_table(args, strategies) -> list[str]:
    programs = layer_programs(args.size, args.batch, strategies)
    times = collections.defaultdict(list)
    for _ in range(args.repeats):
        for name, row in programs.items():
            for impl, fn in row.items():
                times[(name, impl)].append(median_ms(fn, 1))
    impls = [*strategies, "torch"]
    lines = ["| layer | map | Cin -> Cout | fwd GFLOP | " + " | ".join(f"{i} ms (GFLOP/s)" for i in impls) + " |",
             "|---|---|---|---|" + "---|" * len(impls)]
    totals = collections.Counter()
    for name, down, cin, cout in LAYERS:
        h = args.size // down
        gflop = 2 * args.batch * h * h * 9 * cin * cout / 1e9
        cells = []
        for impl in impls:
            ms = statistics.median(times[(name, impl)])
            totals[impl] += ms
            cells.append(f"{ms:.1f} ({2 * gflop / ms * 1e3:.0f})")
        lines.append(f"| {name} | {h}x{h} | {cin} -> {cout} | {gflop:.2f} | " + " | ".join(cells) + " |")
    total_gflop = sum(2 * args.batch * (args.size // d) ** 2 * 9 * ci * co / 1e9 for _, d, ci, co in LAYERS)
    lines.append(f"| all | | | {total_gflop:.1f} | " + " | ".join(
        f"{totals[i]:.0f} ({2 * total_gflop / totals[i] * 1e3:.0f})" for i in impls) + " |")
    return lines


def categories(hlo: str) -> dict[str, str]:
    """Instruction name -> kind, from the optimised HLO text (a fusion takes the kind of what it calls)."""
    bodies = {m.group(1): m.group(2) for m in re.finditer(r"\n(%[\w.\-]+) \(.*?\{\n(.*?)\n\}", "\n" + hlo, re.S)}
    kinds = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = \S+ ([\w\-]+)\(", line)
        if not m:
            continue
        name, op = m.groups()
        called = re.search(r"calls=(%[\w.\-]+)", line)
        body = bodies.get(called.group(1), "") if called else line
        if "convolution(" in body:
            conv = re.search(r"convolution\(.*", body).group(0)
            kinds[name] = "conv backward" if "transpose(" in conv else "conv forward"
        elif re.search(r" dot\(", body):
            kinds[name] = "matrix products"
        elif re.search(r" reduce(-window)?\(", body):
            kinds[name] = "reductions"
        elif op in ("fusion", "copy", "transpose", "pad", "slice", "concatenate", "broadcast", "select",
                    "add", "multiply", "maximum"):
            kinds[name] = "elementwise, copies"
    return kinds


def step_profile(args, strategy) -> dict[str, float]:
    """ms per call of each kind of operation in value_and_grad(texture_loss), and the wall time."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import texsynth_jax as ts

    params, spec = args.params
    config = ts.SynthesisConfig(size=(args.size, args.size), conv=strategy, padding="zero", coarse_iterations=(),
                                **network(args))
    rng = np.random.default_rng(0)
    source = jnp.asarray(rng.random((args.size, args.size, 3), dtype=np.float32))
    images = jnp.asarray(0.5 + 0.1 * rng.standard_normal((args.batch, args.size, args.size, 3)), jnp.float32)
    targets = ts.Engine(params, spec, config, args.batch).targets(source)
    vg = jax.jit(jax.vmap(jax.value_and_grad(lambda x, t, p: ts.texture_loss(x, t, p, spec, config)),
                          in_axes=(0, None, None)))
    kinds = categories(vg.lower(images, targets, params).compile().as_text())
    run = lambda: jax.block_until_ready(vg(images, targets, params))
    run()
    wall = median_ms(run, args.repeats)
    with tempfile.TemporaryDirectory() as folder:
        jax.profiler.start_trace(folder)
        for _ in range(args.repeats):
            run()
        jax.profiler.stop_trace()
        trace = sorted(glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True))[-1]
        data = jax.profiler.ProfileData.from_file(trace)
    spent = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in kinds:
                    spent[kinds[event.name]] += event.duration_ns / 1e6 / args.repeats
    return {**spent, "wall": wall}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="square image size (multiple of 8)")
    parser.add_argument("--batch", type=int, default=1, help="seeds per call")
    parser.add_argument("--conv", default="lax,winograd4", help="comma-separated JAX convolution strategies")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (medians)")
    parser.add_argument("--peak", type=float, default=192.0, help="the CPU's fp32 peak GFLOP/s, for the floor")
    add_weights_arg(parser)
    add_smoke_arg(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.batch, args.conv, args.repeats = SMOKE_SIZE, 1, "lax", 1
    strategies = args.conv.split(",")

    import jax
    import torch
    torch.set_num_threads(os.cpu_count())
    args.params = load_weights(args.weights)
    print(f"# {machine()}; JAX {jax.__version__}, PyTorch {torch.__version__}; {args.size} px, batch {args.batch}; "
          f"medians of {args.repeats}; load average before: {load_average()}", flush=True)
    print()
    print("\n".join(layer_table(args, strategies)), flush=True)
    print()
    kinds = ["conv forward", "conv backward", "matrix products", "reductions", "elementwise, copies"]
    print("| strategy | " + " | ".join(f"{k} ms" for k in kinds) + " | sum over threads ms | wall ms per call |")
    print("|---|" + "---|" * (len(kinds) + 2))
    for strategy in strategies:
        spent = step_profile(args, strategy)
        print(f"| {strategy} | " + " | ".join(f"{spent.get(k, 0.0):.0f}" for k in kinds)
              + f" | {sum(spent.get(k, 0.0) for k in kinds):.0f} | {spent['wall']:.0f} |", flush=True)
    gflop = 2 * 2 * args.batch * sum((args.size // d) ** 2 * 9 * ci * co for _, d, ci, co in LAYERS) / 1e9
    print()
    print(f"Floor: {gflop:.1f} GFLOP of convolutions per call (forward + input gradient) at {args.peak:.0f} GFLOP/s "
          f"= {gflop / args.peak * 1000:.0f} ms (Winograd F(4x4, 3x3) does 4x fewer multiplications in the layers it "
          f"takes). Load average after: {load_average()}")


if __name__ == "__main__":
    main()
