"""Carry a texture onto a photo's layout: the content loss of Gatys, Ecker & Bethge (2016).

The output keeps a content photo's features at one deep layer (`SynthesisConfig.content_layer`, conv4_2 as in
the paper) while the texture terms (Grams, or any term of `--loss`) match the source's: the photo's layout in
the texture's look. The content travels with the targets ({CONTENT: {"features", "image", "weight"}}), so every
content photo and weight of one size runs the same compiled programs (a sweep of weights compiles once).

The loss is weight * unit * mean((F - P)^2) / mean(P^2): the content's features P, the output's F, and `unit`
the texture loss of a flat grey image at that scale. Both ratios are free of the network's input convention
(caffe 0-255 or torchvision [0, 1]) and of the texture terms chosen, so one weight means the same for VGG-19
and VGG-16, for gram and swd: at weight 1 a content error as large as the content itself costs what the
texture loss of a blank image does. (Gatys et al. wrote alpha * 1/2 sum (F - P)^2 + beta * L_style, whose
ratio alpha / beta depends on both.)
"""

import jax
import jax.numpy as jnp

# The key under which targets carry the content: {"features": float32 [H_l, W_l, C], "image": float32 [H, W, 3],
# "weight": float32 scalar (the user's weight times unit / mean(P^2))}.
CONTENT = "content"

STARTS = ("content", "noise")

# A start from the photo has its values squeezed into [MARGIN, 1 - MARGIN]: a pixel at 0 or 1 sits in the sigmoid's
# flat tail, where its gradient vanishes and it barely moves. Against PyTorch's L-BFGS-B (box bounds) at equal
# iterations, 128 px, weight 1, texture loss / content error over PyTorch's: ink onto scikit-image's coffee (a fifth
# of its pixels within 0.05 of 0 or 1) 1.20x / 1.03x squeezed by 0.05, 1.18x / 1.01x by 0.1, 1.06x / 1.01x by 0.2;
# onto the astronaut 1.50x / 1.13x clipped at 0.001 (weight 0.1), 1.04x / 0.98x by 0.05, 0.97x / 0.97x by 0.2
# (bench/content.py --only torch; docs/content.md).
MARGIN = 0.2


def entry(features: jax.Array, image: jax.Array, weight, unit) -> dict:
    """The content's targets at one scale: its features at the content layer, its image at the output's size
    (a start), and the weight the loss applies to the mean square feature error (module docstring)."""
    features = jnp.asarray(features, jnp.float32)
    scale = jnp.maximum(jnp.mean(jnp.square(features)), 1e-12)
    return {"features": features, "image": jnp.asarray(image, jnp.float32),
            "weight": jnp.asarray(weight, jnp.float32) * unit / scale}


def loss(features, targets, layer: str) -> jax.Array:
    """The content loss of an image whose features are `features` ({layer: [H_l, W_l, C]}), of targets that hold
    a content photo (synthesis.texture_loss adds it only then)."""
    content = targets[CONTENT]
    error = features[layer].astype(jnp.float32) - content["features"]
    return content["weight"] * jnp.mean(jnp.square(error))


def start(targets, noise: jax.Array) -> jax.Array:
    """A latent that starts from the content image (squeezed into [MARGIN, 1 - MARGIN]), with a seed's latent
    `noise` added so that seeds differ."""
    image = 0.5 + (1.0 - 2.0 * MARGIN) * (targets[CONTENT]["image"] - 0.5)
    return jax.scipy.special.logit(image) + noise
