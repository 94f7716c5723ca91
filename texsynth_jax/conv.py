"""3x3 'SAME' convolution strategies for one image [H, W, Cin] with an HWIO kernel.

XLA:CPU runs convolutions well below its matrix-product speed, so on CPU the convolution is
re-expressed as one matrix product over the nine shifted copies of the input (im2col); on GPU and
TPU `lax.conv` maps to cuDNN and the TPU's own convolution units and stays the best choice.
"""

import jax
import jax.numpy as jnp

from texsynth_jax.vgg import lax_conv


def matmul_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """im2col: [H, W, 9*Cin] patches times the [9*Cin, Cout] kernel; equals `lax_conv`."""
    h, w, cin = x.shape
    kh, kw, _, cout = kernel.shape
    padded = jnp.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    patches = jnp.concatenate(
        [padded[dy:dy + h, dx:dx + w] for dy in range(kh) for dx in range(kw)], axis=-1)
    return jnp.dot(patches, kernel.reshape(kh * kw * cin, cout),
                   preferred_element_type=x.dtype)


STRATEGIES = {"lax": lax_conv, "matmul": matmul_conv}
# Measured by bench/speed.py; see README.
DEFAULTS = {"cpu": "lax"}


def select(strategy: str, backend: str):
    """The convolution function for `strategy` ("auto" picks the measured default of `backend`)."""
    if strategy == "auto":
        strategy = DEFAULTS.get(backend, "lax")
    return STRATEGIES[strategy]
