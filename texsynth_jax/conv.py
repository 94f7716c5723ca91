"""3x3 'SAME' convolution strategies for one image [H, W, Cin] with an HWIO kernel.

Every strategy computes the same function as `lax_conv` (up to float rounding) and is
differentiable by JAX's autodiff, so the backward pass uses the same strategy's transposes.
"auto" (`name`) is the strategy measured fastest on the backend (`DEFAULTS`, with the command that
measured it), and "lax" on a backend not measured yet.
"""

import functools

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


def _winograd_kernel(kernel: jax.Array, m: int, flip: bool = False) -> jax.Array:
    """G g G^T of every (Cin, Cout) pair: [(m+2)^2, Cin, Cout]. `flip`: of the kernel turned by 180
    degrees (the backward pass's). Weighted sums of the nine [Cin, Cout] taps, one fused loop: as a
    [(m+2)^2, 9] x [9, Cin*Cout] product XLA:CPU took 10x longer at 512 channels."""
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"Winograd convolution needs a 3x3 kernel, not {kernel.shape[:2]}; use 'lax'")
    g = _WINOGRAD[m][1]
    taps = [kernel[i, j].astype(jnp.float32) for i in range(3) for j in range(3)]
    taps = taps[::-1] if flip else taps
    # (G g G^T)[p, q] = sum_ij G[p, i] G[q, j] g[i, j]
    return jnp.stack([_combine(np.outer(g[p], g[q]).ravel(), taps) for p in range(m + 2) for q in range(m + 2)])


def _winograd_apply(x: jax.Array, u: jax.Array, m: int, transposed: bool = False) -> jax.Array:
    """The 'SAME' convolution of x [H, W, C] with a transformed kernel u ([a*a, C, Cout], or with
    `transposed` [a*a, Cout, C], contracted over its last axis: the backward pass's, without a copy)."""
    bt, _, at = _WINOGRAD[m]
    a = m + 2
    h, w, cin = x.shape
    cout = u.shape[1] if transposed else u.shape[2]
    th, tw = -(-h // m), -(-w // m)  # output tiles; the last ones run past the image and are cropped
    padded = jnp.pad(x, ((1, th * m + 1 - h), (1, tw * m + 1 - w), (0, 0)))
    # d[i][j]: element (i, j) of every tile, [th, tw, Cin]; tiles overlap by 2.
    d = [[padded[i:i + th * m:m, j:j + tw * m:m] for j in range(a)] for i in range(a)]
    rows = [[_combine(bt[p], [d[i][j] for i in range(a)]) for j in range(a)] for p in range(a)]
    v = jnp.stack([_combine(bt[q], rows[p]) for p in range(a) for q in range(a)])  # [a*a, th, tw, Cin]
    contract = 2 if transposed else 1
    prod = lax.dot_general(v.reshape(a * a, th * tw, cin), u.astype(x.dtype), (((2,), (contract,)), ((0,), (0,))),
                           preferred_element_type=jnp.float32).reshape(a, a, th, tw, cout)
    cols = [[_combine(at[s], [prod[p, q] for q in range(a)]) for s in range(m)] for p in range(a)]
    y = [[_combine(at[r], [cols[p][s] for p in range(a)]) for s in range(m)] for r in range(m)]
    y = jnp.stack([jnp.stack(row, axis=2) for row in y], axis=1)  # [th, m, tw, m, Cout]
    return y.reshape(th * m, tw * m, cout)[:h, :w].astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _winograd_conv(x: jax.Array, kernel: jax.Array, m: int) -> jax.Array:
    return _winograd_apply(x, _winograd_kernel(kernel, m), m)


def _winograd_fwd(x, kernel, m):
    return _winograd_conv(x, kernel, m), (x, kernel)


def _winograd_bwd(m, saved, ct):
    # The input's gradient of a 'SAME' 3x3 convolution is the 'SAME' convolution of the cotangent
    # with the kernel turned by 180 degrees and Cin, Cout swapped: Winograd too, at the forward's
    # cost (autodiff through the tile transforms costs ~3x). The kernel's gradient, which synthesis
    # never asks for (XLA drops it then), is XLA's own.
    x, kernel = saved
    grad_x = _winograd_apply(ct, _winograd_kernel(kernel, m, flip=True), m, transposed=True)
    _, kernel_vjp = jax.vjp(lambda k: lax_conv(x, k), kernel)
    return grad_x, kernel_vjp(ct)[0]


_winograd_conv.defvjp(_winograd_fwd, _winograd_bwd)


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
# "auto": the fastest strategy per backend, as measured (loss and gradient, fp32, batch 1) by
#   python bench/speed.py --sizes 128 --batches 1 --precision fp32 --conv lax,matmul,shifted,winograd,winograd4 --no-memory
# cpu (AMD EPYC, avx2; bench/README.md, "Convolution strategies"): lax 667 ms, shifted 733, matmul 736,
# winograd 1085, winograd4 3672. Not measured yet: gpu, tpu; they get UNMEASURED, XLA's own convolution
# (cuDNN on GPU), by assumption. Add a backend here with its figures once the command has run there.
DEFAULTS = {"cpu": "lax"}
UNMEASURED = "lax"


def name(strategy: str, backend: str) -> str:
    """The strategy that `strategy` means on `backend`: itself, or for "auto" the measured fastest."""
    return DEFAULTS.get(backend, UNMEASURED) if strategy == "auto" else strategy


def select(strategy: str):
    """The convolution function for `strategy`. For "auto" the choice is made per platform inside the
    program (`lax.platform_dependent`: resolved when it is lowered, so a program lowered on this machine for
    a TPU gets the TPU's entry), never by asking this process's backend while tracing."""
    if strategy != "auto":
        return STRATEGIES[strategy]
    per_platform = {platform: STRATEGIES[name] for platform, name in DEFAULTS.items()}
    default = STRATEGIES[UNMEASURED]
    if all(fn is default for fn in per_platform.values()):
        return default  # one strategy everywhere: nothing to choose

    def auto(x: jax.Array, kernel: jax.Array) -> jax.Array:
        return lax.platform_dependent(x, kernel, **per_platform, default=default)

    return auto
