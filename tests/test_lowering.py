"""Every program of a run lowers for GPU (cuda) and TPU from this CPU-only machine, with the float32 precision
that the statistics need written into it (not left to the hardware's default: bfloat16 passes on TPU, TF32
on GPU) and its shardings. Lowering runs no XLA compiler, so this costs tracing only (shallow network).

What it cannot show: that XLA:GPU and XLA:TPU compile these modules and how fast they run; bench/device.sh
does that the day a GPU is lent."""

import re

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from texsynth_jax import Engine, SynthesisConfig, evaluate, parallel
from test_synthesis import SPECS, random_params

PLATFORMS = ("cuda", "tpu")
DEVICES = 8
SIZE = 32
# Every term, both meshes (and none), tileable or not, fp32 and bf16, remat on and off: each value in a case.
CASES = [  # (loss, mesh, tileable, precision, remat)
    (("gram:1",), parallel.SEEDS, False, "fp32", False),
    (("swd:1",), parallel.SPACE, True, "bf16", True),
    (("hist:1", "spectrum:0.1"), "none", True, "fp32", True),
    (("gram:1", "swd:0.5", "spectrum:0.1"), parallel.SPACE, False, "bf16", False),
]


def cpu_devices():
    """The 8 virtual CPU devices of conftest (on a GPU machine too, where jax.devices() is one GPU)."""
    devices = jax.devices("cpu")
    if len(devices) < DEVICES:
        pytest.skip(f"{len(devices)} CPU devices, not {DEVICES} (conftest sets jax_num_cpu_devices)")
    return devices[:DEVICES]


def dot_precisions(text: str) -> list[str]:
    """The precision of every dot_general in a StableHLO module ("DEFAULT" where none is written)."""
    lines = [line for line in text.splitlines() if "stablehlo.dot_general" in line]
    return [(re.search(r"precision = \[(\w+), \w+\]", line) or ["", "DEFAULT"])[1] for line in lines]


@pytest.fixture(scope="module")
def params():
    return random_params("vgg16")


@pytest.mark.parametrize("loss,mesh,tileable,precision,remat", CASES)
def test_every_program_lowers_for_gpu_and_tpu(params, loss, mesh, tileable, precision, remat):
    config = SynthesisConfig(size=(SIZE, SIZE), layers=("conv1_1", "pool1"), layer_weights=(1.0, 1.0),
                             coarse_iterations=(), loss=loss, tileable=tileable, precision=precision, remat=remat)
    made = Engine(params, SPECS["vgg16"], config, DEVICES,
                  mesh=parallel.choose_mesh(mesh, cpu_devices()))
    for platform in PLATFORMS:
        lowered = made.lower(platform)
        assert set(lowered) == {"targets", "init", "step", "restart"}
        for name, program in lowered.items():
            text = program.as_text()
            # Every matrix product is a statistic's or the optimiser's (the convolutions are XLA's own, at
            # the backend's fast default): all of them in float32, on this platform too.
            assert set(dot_precisions(text)) <= {"HIGHEST"}, (platform, name, dot_precisions(text))
        step = lowered["step"].as_text()
        assert "stablehlo.convolution" in step, platform
        assert ("bf16" in step) == (precision == "bf16"), (platform, precision)
        if mesh != "none":  # the state's shardings are in the program: 8 seeds or 8 strips of the image
            assert re.search(rf'"{mesh}"\s*=\s*{DEVICES}\b|devices=\[{DEVICES}', step), (platform, mesh)
        if "gram:1" in loss:
            assert "HIGHEST" in step


def test_the_judge_lowers_for_gpu_and_tpu():
    """The judge's programs (its AlexNet features, LPIPS and the copy search), real weights' shapes."""
    judge = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), evaluate.load_judge())
    image = jax.ShapeDtypeStruct((64, 64, 3), jnp.float32)
    depth = max(evaluate.DISTANCE_LAYERS) + 1
    patches = jax.eval_shape(evaluate._all_patches, image)
    queries = jax.ShapeDtypeStruct((evaluate.CHUNK, patches[0].shape[1]), jnp.float32)
    at = jax.ShapeDtypeStruct((evaluate.CHUNK, 2), patches[2].dtype)
    programs = {
        "features": jax.jit(evaluate.alexnet, static_argnums=2).trace(judge, image, depth),
        "lpips": jax.jit(evaluate.lpips).trace(judge, image, image),
        "patches": evaluate._all_patches.trace(image),
        "nearest": evaluate._nearest_block.trace(queries, at, *patches, 16),
    }
    for platform in PLATFORMS:
        for name, traced in programs.items():
            text = traced.lower(lowering_platforms=(platform,)).as_text()
            assert set(dot_precisions(text)) <= {"HIGHEST"}, (platform, name, dot_precisions(text))
            for line in text.splitlines():  # its convolutions too: the judge's figures must not move with hardware
                if "stablehlo.convolution" in line:
                    assert "HIGHEST" in line, (platform, name, line)
