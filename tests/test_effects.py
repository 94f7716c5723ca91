"""Every setting of SynthesisConfig held to its effect: the compiled program or the output differs as
documented, so a synthesis that ignored the setting fails here (tests/mutations.py checks that it does).

Small sizes (16-64 px) and a narrow VGG-16 (at most 8 channels a layer: the same layers, paddings,
pools and bands as the real network) keep each compilation to a second or two.
"""

import dataclasses
import importlib
import re

import numpy as np
import jax
import jax.numpy as jnp
import pytest
import torch
import torch.nn.functional as F
from jax import export

from texsynth_jax import (SynthesisConfig, coarse_to_fine, compute_targets, conv, lbfgs, losses, synthesis,
                          texture_loss, vgg)
from texsynth_jax.optimizers import OptaxState
from test_remat import narrow_params
from test_synthesis import SPECS

LAYERS = ("conv1_1", "pool1", "pool2")
SPEC = SPECS["vgg16"]


@pytest.fixture(scope="module")
def params():
    return narrow_params("vgg16")


def config_of(size=32, layers=LAYERS, **kwargs):
    """One scale (coarse_iterations=()) and the image's own Grams (pyramid=0: the loss PyTorch computes and
    the programs counted here), whatever the defaults become."""
    return SynthesisConfig(size=(size, size) if isinstance(size, int) else size, layers=layers,
                           layer_weights=kwargs.pop("layer_weights", (1.0,) * len(layers)),
                           coarse_iterations=(), pyramid=kwargs.pop("pyramid", 0), **kwargs)


def images(size, count=2, seed=0):
    rng = np.random.default_rng(seed)
    shape = (size, size) if isinstance(size, int) else size
    return [jnp.asarray(rng.random((*shape, 3), dtype=np.float32)) for _ in range(count)]


# Where each setting is held to its effect: here, or the test of its own module named beside it.
EFFECT_TESTS = {
    "size": "test_synthesis.py::test_output_size_may_differ_from_source",
    "layers": "test_effects.py::test_loss_follows_the_network_settings",
    "layer_weights": "test_effects.py::test_loss_follows_the_network_settings",
    "pooling": "test_effects.py::test_loss_follows_the_network_settings",
    "padding": "test_effects.py::test_loss_follows_the_network_settings",
    "tileable": "test_effects.py::test_loss_follows_the_network_settings",
    "iterations": "test_synthesis.py::test_vmap_over_seeds_equals_a_loop",
    "history": "test_effects.py::test_history_and_optimizer_shape_the_state",
    "optimizer": "test_effects.py::test_history_and_optimizer_shape_the_state",
    "init": "test_synthesis.py::test_starting_noise",
    "init_scale": "test_synthesis.py::test_starting_noise",
    "precision": "test_effects.py::test_bf16_is_in_the_convolutions",
    "remat": "test_effects.py::test_remat_recomputes_in_the_compiled_gradient",
    "conv": "test_effects.py::test_conv_strategy_is_the_program",
    "loss": "test_terms.py::test_terms_compose_by_weight",
    "projections": "test_terms.py::test_projections_fixed_keep_the_key_and_fresh_redraw_it",
    "coarse_iterations": "test_coarse_to_fine.py::test_a_texture_larger_than_its_source_runs_every_scale_once_compiled",
    "upsample": "test_effects.py::test_upsample_starts_the_next_scale",
    "coarsest_padding": "test_effects.py::test_coarsest_padding_is_the_coarsest_scales_loss",
    "coarse_min_view": "test_coarse_to_fine.py::test_coarse_scales_the_deepest_layer_barely_sees_are_left_out",
    "source_scale": "test_source_scale.py::test_source_scale_resizes_the_source_before_its_statistics",
    "blend": "test_blend.py::test_cli_blend_weights_one_and_zero_are_a_single_source_run",
    "colors": "test_colors.py::test_cli_colors_from_a_palette_and_from_the_source",
    "guide": "test_guide.py::test_two_photos_in_two_regions_each_near_its_own",
    "region": "test_guide.py::test_cli_regions_source_guide_record_and_errors",
    "source_guide": "test_guide.py::test_cli_regions_source_guide_record_and_errors",
    "fill": "test_fill.py::test_cli_hole_alpha_extend_tile_record_and_errors",
    "mask": "test_fill.py::test_cli_hole_alpha_extend_tile_record_and_errors",
    "place": "test_fill.py::test_cli_hole_alpha_extend_tile_record_and_errors",
    "band": "test_fill.py::test_cli_hole_alpha_extend_tile_record_and_errors",
    "content": "test_content.py::test_the_command_line_records_judges_and_keeps_the_photos_colours",
    "content_weight": "test_content.py::test_weight_0_on_the_command_line_is_the_texture_alone_bit_for_bit",
    "content_layer": "test_content.py::test_the_loss_is_pytorch_gatys_2016",
    "content_start": "test_content.py::test_the_start_is_the_photo_or_noise",
    "pyramid": "test_pyramid.py::test_the_loss_adds_each_halved_outputs_loss_against_the_halved_source",
}


def test_every_setting_has_an_effect_test():
    fields = {f.name for f in dataclasses.fields(SynthesisConfig)}
    missing = sorted(fields - set(EFFECT_TESTS))
    assert not missing, f"settings {missing} have no test of their effect; add one and name it in EFFECT_TESTS"
    for name in fields:
        module, function = EFFECT_TESTS[name].split("::")
        assert hasattr(importlib.import_module(module[:-3]), function), EFFECT_TESTS[name]


# --- the loss: layers, layer_weights, pooling, padding, tileable, against PyTorch -----------------------

TORCH_PADDING = {"zero": "constant", "reflect": "reflect", "circular": "circular"}


def torch_loss(params, image, source, config: SynthesisConfig) -> float:
    """The texture loss written independently in PyTorch (float64): F.pad in the padding's mode, the
    output's convolutions circular when tileable, the source's in `padding` as documented."""
    def features(x, padding):
        x = torch.tensor(np.asarray(x), dtype=torch.float64).permute(2, 0, 1)[None]
        mean = torch.tensor(SPEC.mean, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(SPEC.std, dtype=torch.float64).view(1, 3, 1, 1)
        x, out = (x * SPEC.scale - mean) / std, {}  # torchvision convention: RGB
        for name in vgg.needed_layers("vgg16", config.layers):
            if name.startswith("conv"):
                w = torch.tensor(params[name]["kernel"], dtype=torch.float64).permute(3, 2, 0, 1)
                b = torch.tensor(params[name]["bias"], dtype=torch.float64)
                x = F.relu(F.conv2d(F.pad(x, (1, 1, 1, 1), mode=TORCH_PADDING[padding]), w, b))
            else:
                x = F.avg_pool2d(x, 2) if config.pooling == "avg" else F.max_pool2d(x, 2)
            out[name] = x[0].reshape(x.shape[1], -1)
        return {n: out[n] @ out[n].T / out[n].shape[1] for n in config.layers}

    targets = features(source, config.padding)
    grams = features(image, "circular" if config.tileable else config.padding)
    return float(sum(w * ((grams[n] - targets[n]) ** 2).sum() / (4 * grams[n].shape[0] ** 2)
                     for n, w in zip(config.layers, config.layer_weights)))


@pytest.mark.parametrize("settings", [
    dict(padding="zero"),
    dict(padding="reflect", pooling="max", layer_weights=(1.0, 0.5, 2.0)),
    dict(padding="circular", layer_weights=(0.25, 1.0, 3.0)),
    dict(padding="reflect", tileable=True),  # the output a torus, the source's statistics reflected
    dict(padding="zero", layers=("conv1_1", "conv1_2", "pool1"), layer_weights=(0.0, 1.0, 2.0)),
], ids=["zero", "reflect-max-weights", "circular-weights", "tileable", "layers"])
def test_loss_follows_the_network_settings(params, settings):
    config = config_of(**settings)
    image, source = images(32)
    targets = compute_targets(params, source, SPEC, config)
    loss = float(jax.jit(texture_loss, static_argnums=(3, 4))(image, targets, params, SPEC, config))
    expected = torch_loss(params, image, source, config)
    assert abs(loss / expected - 1) < 1e-4, (loss, expected)


# --- precision ----------------------------------------------------------------------------------------

def conv_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "stablehlo.convolution" in line]


def test_bf16_is_in_the_convolutions(params):
    """bf16: every convolution of the loss's gradient takes and gives bfloat16 (the program as JAX writes
    it; XLA:CPU then converts around them, bench/README.md), the Grams and the loss stay float32, and the
    loss moves by bfloat16 rounding, not more."""
    image, source = images(32)
    grad = jax.jit(jax.grad(texture_loss), static_argnums=(3, 4))
    value = jax.jit(texture_loss, static_argnums=(3, 4))
    results = {}
    for precision in ("fp32", "bf16"):
        config = config_of(precision=precision)
        targets = compute_targets(params, source, SPEC, config)
        lines = conv_lines(grad.lower(image, targets, params, SPEC, config).as_text())
        assert len(lines) >= 4, lines  # forward and input gradient of each conv of the path
        with_bf16 = [bool(re.search(r"tensor<[0-9x]*bf16>.*tensor<[0-9x]*bf16>.*-> tensor<[0-9x]*bf16>", l))
                     for l in lines]
        assert all(with_bf16) if precision == "bf16" else not any(with_bf16), lines
        assert all(t.dtype == jnp.float32 for t in targets["gram"].values())
        results[precision] = float(value(image, targets, params, SPEC, config))
    assert 1e-6 < abs(results["bf16"] / results["fp32"] - 1) < 5e-2, results


# --- remat ----------------------------------------------------------------------------------------------

def test_remat_recomputes_in_the_compiled_gradient(params):
    """At 64 rows the first block runs in 2 bands: the compiled gradient (after XLA's CSE, which on CPU
    merges jax.checkpoint's recomputation back into the forward pass) has each band's convolutions again
    in the backward pass. test_remat checks the values are the plain network's and the memory lower."""
    (image,) = images((64, 16), 1)
    grad = jax.jit(jax.grad(texture_loss), static_argnums=(3, 4))
    counts = {}
    for remat in (False, True):
        config = config_of(size=(64, 16), layers=("conv1_1", "pool1"), remat=remat)
        targets = compute_targets(params, image, SPEC, config)
        text = grad.lower(image, targets, params, SPEC, config).compile().as_text()
        counts[remat] = len(re.findall(r"= \S+ convolution\(", text))
    # Plain: 2 forward + 2 input gradients. Bands: 2 bands x (2 forward + 2 recomputed + 2 gradients).
    assert counts[False] == 4 and counts[True] == 12, counts


# --- conv -----------------------------------------------------------------------------------------------

def test_conv_strategy_is_the_program(params):
    """lax: XLA convolutions; every other strategy: none, matrix products instead; auto: the backend's
    entry of conv.DEFAULTS."""
    (image,) = images(16, 1)
    lower = jax.jit(texture_loss, static_argnums=(3, 4)).lower
    targets = compute_targets(params, image, SPEC, config_of(size=16, layers=("pool1",)))  # only shapes matter
    counts = {}
    for strategy in ("auto", *conv.STRATEGIES):
        config = config_of(size=16, layers=("pool1",), conv=strategy)
        text = lower(image, targets, params, SPEC, config).as_text()
        counts[strategy] = (text.count("stablehlo.convolution"), text.count("stablehlo.dot_general"))
    assert counts["lax"][0] == 2, counts  # conv1_1, conv1_2
    for strategy in set(conv.STRATEGIES) - {"lax"}:
        assert counts[strategy][0] == 0 and counts[strategy][1] > counts["lax"][1], (strategy, counts)
    assert counts["auto"] == counts[conv.DEFAULTS[jax.default_backend()]], counts


# --- history, optimizer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["lbfgs", "optax"])
def test_history_and_optimizer_shape_the_state(params, optimizer):
    """The optimiser's state is the named one's, with `history` pairs of memory (shapes only: no compile)."""
    (source,) = images(16, 1)
    for history in (3, 7):
        config = config_of(size=16, optimizer=optimizer, history=history)
        targets = compute_targets(params, source, SPEC, config)
        state = jax.eval_shape(lambda key, targets, params: synthesis.init_state(key, targets, params, SPEC, config),
                               jax.random.key(0), targets, params)
        assert isinstance(state.opt_state, lbfgs.LbfgsState if optimizer == "lbfgs" else OptaxState)
        memories = [leaf.shape for leaf in jax.tree.leaves(state.opt_state) if leaf.shape == (history, 16, 16, 3)]
        assert len(memories) >= 2, jax.tree.map(lambda leaf: leaf.shape, state.opt_state)  # steps and gradients


# --- upsample, and tileable's periodic resize ----------------------------------------------------------

def test_upsample_starts_the_next_scale(params):
    """A scale starts from the previous one's latent enlarged with `upsample` (periodically when tileable):
    every method gives its own start, jax.image's resize of that method."""
    latent = jax.random.normal(jax.random.key(1), (16, 16, 3))
    key_data = jax.random.key_data(jax.random.key(2))
    starts = {}
    for tileable in (False, True):
        for method in ("nearest", "linear", "cubic", "lanczos3"):
            config = config_of(size=32, layers=("conv1_1",), upsample=method, tileable=tileable)
            targets = compute_targets(params, jnp.full((32, 32, 3), 0.5), SPEC, config)
            start = np.asarray(synthesis.restart(latent, key_data, targets, params, SPEC, config).latent)
            if tileable:
                np.testing.assert_allclose(start, synthesis.resize(latent, (32, 32), method, periodic=True), atol=1e-6)
            else:
                np.testing.assert_allclose(start, jax.image.resize(latent, (32, 32, 3), method), atol=1e-6)
            starts[tileable, method] = start
    for a in starts:
        for b in starts:  # all differ but nearest's two (nearest never looks past the border)
            if a < b and {a[1], b[1]} != {"nearest"}:
                assert np.abs(starts[a] - starts[b]).max() > 1e-3, (a, b)


@pytest.mark.parametrize("coarsest_padding,size,extra,expected", [
    ("circular", 64, {}, "circular"),
    ("auto", 64, {}, "circular"),  # up to 256x256 pixels: the coarsest scale a torus
    ("auto", 256, {}, "circular"),
    ("auto", 272, {}, "zero"),  # above: --padding
    ("auto", 64, {"tileable": True}, "zero"),  # the layout given otherwise: --padding
    ("auto", 64, {"fill": "photo.png"}, "zero"),
    ("auto", 64, {"content": "photo.png"}, "zero"),
    ("auto", 64, {"content": "photo.png", "content_weight": 0.0}, "circular"),  # weight 0: the size alone
])
def test_coarsest_padding_is_the_coarsest_scales_loss(params, coarsest_padding, size, extra, expected):
    """The coarsest scale's loss (of the engine make_engine builds for it, from CoarseToFine.targets) is PyTorch's
    with `expected` padding for the image and the shrunk source; the finer scales' keep --padding."""
    config = SynthesisConfig(size=(size, size), layers=LAYERS, layer_weights=(1.0,) * 3, coarse_iterations=(1, 1),
                             pyramid=0, padding="zero", coarsest_padding=coarsest_padding, **extra)
    ctf = coarse_to_fine.make_engine(params, SPEC, config, 1)
    (source,) = images(size, count=1, seed=5)
    targets = ctf.targets(source)
    for k, (engine, padding) in enumerate(zip(ctf.engines, [expected, "zero", "zero"], strict=True)):
        side = engine.config.size[0]
        (image,) = images(side, count=1, seed=6 + k)
        loss = float(texture_loss(image, targets[k], params, SPEC, engine.config))
        want = config_of(size=side, padding=padding, tileable=config.tileable)
        expected_loss = torch_loss(params, image, synthesis.resize_source(jnp.asarray(source), (side, side)), want)
        assert abs(loss / expected_loss - 1) < 1e-4, (k, padding, loss, expected_loss)


# --- the sorts off CPU ----------------------------------------------------------------------------------

def off_cpu(fn, *args, platform="cuda"):
    """`fn` lowered for `platform` (jax.lax.platform_dependent takes that branch) and run here on CPU."""
    shapes = [jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype) for a in args]
    exported = export.export(jax.jit(fn), platforms=(platform,),
                             disabled_checks=[export.DisabledSafetyCheck.platform()])(*shapes)
    assert "callback" not in exported.mlir_module()  # the host sorts are CPU's alone
    return exported.call(*args)


def test_off_cpu_sorts_sort(params):
    """The XLA sorts that GPU and TPU run (CPU sorts in numpy), forced here by lowering for CUDA: the
    columns sorted and ranked as numpy does, and the swd loss and gradient equal to CPU's."""
    x = np.random.default_rng(3).normal(size=(50, 4)).astype(np.float32)
    np.testing.assert_array_equal(off_cpu(losses.sort_columns, x), np.sort(x, axis=0))
    ranks = np.empty(x.shape, np.int32)
    np.put_along_axis(ranks, np.argsort(x, axis=0), np.arange(50, dtype=np.int32)[:, None], axis=0)
    np.testing.assert_array_equal(off_cpu(losses.rank_columns, x), ranks)

    config = config_of(size=16, layers=("conv1_1", "pool1"), loss=("swd:1",))
    image, source = images(16)
    targets = compute_targets(params, source, SPEC, config)
    fn = jax.value_and_grad(lambda image: texture_loss(image, targets, params, SPEC, config))
    (value, grad), (cpu_value, cpu_grad) = off_cpu(fn, image), jax.jit(fn)(image)
    np.testing.assert_allclose(value, cpu_value, rtol=1e-5)
    np.testing.assert_allclose(grad, cpu_grad, rtol=1e-4, atol=1e-7 * np.abs(cpu_grad).max())
