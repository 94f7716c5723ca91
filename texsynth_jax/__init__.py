"""texsynth_jax: Gatys et al. (2015) texture synthesis as pure JAX functions.

    params, spec, _ = texsynth_jax.load_weights("models/vgg16_lpips.h5")
    config = texsynth_jax.SynthesisConfig(size=(256, 256), iterations=300)
    targets = texsynth_jax.compute_targets(params, source, spec, config)
    images, losses = texsynth_jax.synthesize(jax.random.split(jax.random.key(0), 4), targets, params, spec, config)
"""

from texsynth_jax.config import SynthesisConfig
from texsynth_jax.image_io import load_image, save_png
from texsynth_jax.losses import gram_matrix, style_loss
from texsynth_jax.synthesis import (SynthState, compute_targets, image_from_latent, init_state,
                                    init_state_batch, step, step_batch, synthesize, texture_loss)
from texsynth_jax.vgg import NetworkSpec, extract_features, preprocess
from texsynth_jax.weights import WeightsError, load_weights

__all__ = [
    "SynthesisConfig", "load_image", "save_png", "gram_matrix", "style_loss", "SynthState",
    "compute_targets", "image_from_latent", "init_state", "init_state_batch", "step", "step_batch",
    "synthesize", "texture_loss", "NetworkSpec", "extract_features", "preprocess", "WeightsError",
    "load_weights",
]
