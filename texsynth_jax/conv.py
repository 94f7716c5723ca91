"""3x3 'SAME' convolution strategies for one image [H, W, Cin] with an HWIO kernel.

Every strategy computes the same function as `lax_conv` (up to float rounding) and is
differentiable by JAX's autodiff, so the backward pass uses the same strategy's transposes.
On GPU and TPU `lax.conv` maps to cuDNN and the TPU's own convolution units and stays the best
choice. On CPU the fastest one is measured by bench/speed.py (see bench/README.md) and recorded
in `DEFAULTS`.
"""

import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

from texsynth_jax.vgg import lax_conv


def _pad_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    kh, kw = kernel.shape[:2]
    return jnp.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))


def matmul_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """im2col: [H, W, 9*Cin] patches times the [9*Cin, Cout] kernel; equals `lax_conv`."""
    h, w, cin = x.shape
    kh, kw, _, cout = kernel.shape
    padded = _pad_same(x, kernel)
    patches = jnp.concatenate(
        [padded[dy:dy + h, dx:dx + w] for dy in range(kh) for dx in range(kw)], axis=-1)
    return jnp.dot(patches, kernel.reshape(kh * kw * cin, cout),
                   preferred_element_type=jnp.float32).astype(x.dtype)


def shifted_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Nine [H*W, Cin] x [Cin, Cout] products, one per kernel tap, of shifted inputs, summed."""
    h, w, _ = x.shape
    kh, kw = kernel.shape[:2]
    padded = _pad_same(x, kernel)
    out = None
    for dy in range(kh):
        for dx in range(kw):
            term = jnp.dot(padded[dy:dy + h, dx:dx + w], kernel[dy, dx],
                           preferred_element_type=jnp.float32)
            out = term if out is None else out + term
    return out.astype(x.dtype)


# Winograd minimal filtering F(m x m, 3 x 3) (Lavin & Gray 2016): Y = A^T [(G g G^T) * (B^T d B)] A
# per (m+2) x (m+2) input tile d, so an m x m output tile costs (m+2)^2 products per channel pair
# instead of 9 m^2: 2.25x fewer for m = 2, 4x fewer for m = 4, at some cost in float error.
_WINOGRAD = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], np.float64)),
}


def _combine(coeffs, terms):
    """sum_i coeffs[i] * terms[i] as elementwise ops, skipping zeros (XLA fuses them)."""
    out = None
    for c, t in zip(coeffs, terms):
        if c == 0:
            continue
        t = t if c == 1 else (-t if c == -1 else t * c)
        out = t if out is None else out + t
    return out


def _winograd_conv(x: jax.Array, kernel: jax.Array, m: int) -> jax.Array:
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"Winograd convolution needs a 3x3 kernel, not {kernel.shape[:2]}; use 'lax'")
    bt, g, at = _WINOGRAD[m]
    a = m + 2
    h, w, cin = x.shape
    cout = kernel.shape[-1]
    th, tw = -(-h // m), -(-w // m)  # output tiles; the last ones run past the image and are cropped
    padded = jnp.pad(x, ((1, th * m + 1 - h), (1, tw * m + 1 - w), (0, 0)))
    # d[i][j]: element (i, j) of every tile, [th, tw, Cin]; tiles overlap by 2.
    d = [[padded[i:i + th * m:m, j:j + tw * m:m] for j in range(a)] for i in range(a)]
    rows = [[_combine(bt[p], [d[i][j] for i in range(a)]) for j in range(a)] for p in range(a)]
    v = jnp.stack([_combine(bt[q], rows[p]) for p in range(a) for q in range(a)])  # [a*a, th, tw, Cin]
    u = jnp.einsum("pi,ijco,qj->pqco", g.astype(np.float32), kernel.astype(jnp.float32),
                   g.astype(np.float32)).reshape(a * a, cin, cout).astype(x.dtype)
    prod = lax.dot_general(v.reshape(a * a, th * tw, cin), u, (((2,), (1,)), ((0,), (0,))),
                           preferred_element_type=jnp.float32).reshape(a, a, th, tw, cout)
    cols = [[_combine(at[s], [prod[p, q] for q in range(a)]) for s in range(m)] for p in range(a)]
    y = [[_combine(at[r], [cols[p][s] for p in range(a)]) for s in range(m)] for r in range(m)]
    y = jnp.stack([jnp.stack(row, axis=2) for row in y], axis=1)  # [th, m, tw, m, Cout]
    return y.reshape(th * m, tw * m, cout)[:h, :w].astype(x.dtype)


def winograd_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Winograd F(2x2, 3x3): 16 [tiles, Cin] x [Cin, Cout] products per 2x2 output tile."""
    return _winograd_conv(x, kernel, 2)


def winograd4_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Winograd F(4x4, 3x3): 36 [tiles, Cin] x [Cin, Cout] products per 4x4 output tile."""
    return _winograd_conv(x, kernel, 4)


STRATEGIES = {
    "lax": lax_conv,
    "matmul": matmul_conv,
    "shifted": shifted_conv,
    "winograd": winograd_conv,
    "winograd4": winograd4_conv,
}
# Measured by bench/speed.py; see bench/README.md.
DEFAULTS = {"cpu": "lax"}


def select(strategy: str, backend: str):
    """The convolution function for `strategy` ("auto" picks the measured default of `backend`)."""
    if strategy == "auto":
        strategy = DEFAULTS.get(backend, "lax")
    return STRATEGIES[strategy]
