"""Images on disk <-> float32 [H, W, 3] RGB in [0, 1]. Every write is atomic."""

import contextlib
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from texsynth_jax import storage


class ImageError(ValueError):
    """An image cannot be read; the message names the file and the fix."""


def load_image(path: str) -> tuple[np.ndarray, list[str]]:
    """Read an image file as RGB, upright.

    Every Pillow mode is either converted or refused with one line (ImageError); each conversion is
    reported in the returned notes:
      - EXIF orientation (phone photos): turned upright, as a viewer shows it.
      - 1, L, P, YCbCr, CMYK, LAB, HSV: converted by Pillow (CMYK without any colour profile); alpha (LA, PA,
        RGBA, RGBa, a transparent palette colour) is composited over white.
      - 16-bit containers (I;16, I;16B, I;16L, and PGM/PPM, which Pillow reads as 16-bit "I"): divided by 65535.
      - 32-bit integers (mode I, e.g. a TIFF): divided by the smallest of 255, 65535 and 2^31 - 1 that holds
        the largest value: such files are mostly 8- or 16-bit data widened by a converter, and a larger
        divisor would leave the image almost black. Negative values are refused.
      - 32-bit floats (F): values in [0, 1] as they are, others rescaled from their minimum..maximum;
        NaN or infinite values are refused.
      - 16-bit-per-channel RGB(A) is read at 8 bits per channel (Pillow's decoding), noted.

    Returns:
      image: float32 [H, W, 3] RGB in [0, 1]; notes: human-readable conversions done.
    """
    if not _exists(path):
        raise ImageError(f"input image {path} not found; check the path given to --input")
    try:
        with _opened(path) as img:
            wide = _is_16bit_colour(img)  # visible only before load(), in the decoder's raw mode
            sixteen = img.format == "PPM" or any(r.startswith("I;16") for r in _rawmodes(img))  # Pillow scales PGM to 16 bits
            orientation = _orientation(img)
            img.load()
            # Pillow turns a TIFF upright itself as it loads it (and drops the tag); other formats keep theirs.
            upright = ImageOps.exif_transpose(img) if _orientation(img) != 1 else img
            image, notes = _to_rgb(upright, path, sixteen)
            if orientation != 1:
                notes.insert(0, f"turned upright by its EXIF orientation {orientation} ({_ORIENTATIONS[orientation]})")
            if wide:
                notes.insert(0, f"read 16-bit {img.mode} as 8 bits per channel")
            return image, notes
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"input image {path} cannot be read ({e}); give a PNG or JPEG file") from None


def load_alpha(path: str) -> np.ndarray | None:
    """uint8 [H, W]: an image's alpha channel, upright as `load_image` turns it; None when it has none (a
    transparent palette colour counts). Errors as load_image's."""
    load_image(path)  # its one-line errors for a missing or unreadable file
    with _opened(path) as img:
        img.load()
        upright = ImageOps.exif_transpose(img) if _orientation(img) != 1 else img
        if upright.mode not in ("LA", "PA", "RGBA", "RGBa") and "transparency" not in upright.info:
            return None
        return np.asarray(upright.convert("RGBA"))[..., 3].copy()


_ORIENTATIONS = {2: "mirrored", 3: "rotated 180 degrees", 4: "flipped upside down", 5: "transposed",
                 6: "rotated 90 degrees clockwise", 7: "transversed", 8: "rotated 90 degrees anticlockwise"}


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8; 1: upright, also when absent or unreadable), from the header where it can
    be (JPEG, TIFF, WebP; a PNG's eXIf chunk before its pixels), without decoding the pixels."""
    try:
        if img.format == "PNG":
            exif = Image.Exif()
            if "exif" in img.info:
                exif.load(img.info["exif"])
        else:
            exif = img.getexif()
        orientation = int(exif.get(0x0112, 1))
    except Exception:  # a malformed EXIF block: Pillow's viewers ignore it too
        return 1
    return orientation if orientation in _ORIENTATIONS else 1


def check_image(path: str, what: str = "input image", flag: str = "--input") -> tuple[int, int]:
    """(height, width) of an image file from its header, upright (EXIF orientation), after checking that it
    can be read, without decoding its pixels (a batch job checks every source before it starts). Errors
    name the image as `what`, given with `flag`."""
    if not _exists(path):
        raise ImageError(f"{what} {path} not found; check the path given to {flag}")
    try:
        with _opened(path) as img:
            size = img.size
            # A quarter turn swaps height and width; Pillow gives a TIFF's size upright already.
            turned = _orientation(img) in (5, 6, 7, 8) and img.format != "TIFF"
            img.verify()  # structure and checksums (PNG CRCs): catches truncated and corrupt files
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{what} {path} cannot be read ({e}); give a PNG or JPEG file") from None
    return (size[0], size[1]) if turned else (size[1], size[0])


def _exists(path: str) -> bool:
    try:
        return storage.exists(path)
    except storage.StorageError:
        raise
    except Exception as e:  # a store that cannot be reached
        raise ImageError(f"input image {path} cannot be reached ({type(e).__name__}: {e}); check the URL and "
                         "your access to it") from None


@contextlib.contextmanager
def _opened(path: str):
    """Image.open without Pillow's decompression-bomb warning: the job's memory budget
    (budget.check, from this header size) judges whether the pixels fit, and says what would.
    Pillow's hard limit (2 * Image.MAX_IMAGE_PIXELS) stays, as a one-line error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(storage.opened(path) if storage.is_url(path) else path) as img:
                yield img
        except Image.DecompressionBombError:
            raise ImageError(f"input image {path} has more than {2 * Image.MAX_IMAGE_PIXELS} pixels, Pillow's "
                             "limit against decompression bombs; give a smaller image") from None


def _rawmodes(img: Image.Image) -> list[str]:
    """The decoder's raw modes of an image not yet loaded (Pillow's tile arguments: a string or a tuple)."""
    args = [t[3] for t in (img.tile or []) if len(t) > 3]
    return [a if isinstance(a, str) else a[0] for a in args if isinstance(a, str) or (a and isinstance(a[0], str))]


def _is_16bit_colour(img: Image.Image) -> bool:
    """True for 16-bit-per-channel RGB(A), which Pillow decodes to 8 bits without saying so."""
    return img.mode in ("RGB", "RGBA") and any(r.startswith(("RGB;16", "RGBA;16")) for r in _rawmodes(img))


def _gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(values.astype(np.float32)[..., None], 3, axis=-1)


def _to_rgb(img: Image.Image, path: str, sixteen: bool) -> tuple[np.ndarray, list[str]]:
    """Pixels of a loaded image as float32 RGB in [0, 1], with notes (load_image's rules). `sixteen`: its
    container holds 16-bit samples (known only before load)."""
    notes, mode = [], img.mode
    if mode.startswith("I;16") or (mode == "I" and sixteen):
        notes.append(f"converted 16-bit grayscale ({mode}) to RGB (divided by 65535)")
        return _gray(np.asarray(img, np.float64) / 65535.0), notes
    if mode == "I":
        values = np.asarray(img, np.int64)
        if values.min() < 0:
            raise ImageError(f"input image {path} is 32-bit integer grayscale with negative values "
                             f"({values.min()}); give an image with values >= 0 (e.g. a 16-bit PNG)")
        top, bits = next((t, b) for t, b in ((255, 8), (65535, 16), (2**31 - 1, 31)) if values.max() <= t)
        notes.append(f"converted 32-bit integer grayscale (I) to RGB: values up to {values.max()}, read as {bits}-bit "
                     f"(divided by {top})")
        return _gray(values / top), notes
    if mode == "F":
        values = np.asarray(img, np.float64)
        if not np.all(np.isfinite(values)):  # the only mode that can hold NaN
            raise ImageError(f"input image {path} holds NaN or infinite pixel values; give an image whose "
                             "pixels are all finite")
        low, high = values.min(), values.max()
        if low >= 0 and high <= 1:
            notes.append("converted float grayscale (F) to RGB (values in [0, 1] kept)")
            return _gray(values), notes
        notes.append(f"converted float grayscale (F) to RGB (rescaled from {low:.4g}..{high:.4g} to [0, 1])")
        return _gray((values - low) / max(high - low, 1e-12)), notes
    if mode not in ("1", "L", "P", "RGB", "YCbCr", "CMYK", "LAB", "HSV", "RGBA", "RGBa", "LA", "PA"):
        raise ImageError(f"input image {path} has pixel mode {mode}, which cannot be read as RGB; "
                         "save it as an 8-bit RGB PNG")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        notes.append("converted palette image to RGB")
        mode = img.mode
    if mode in ("RGBA", "RGBa", "LA", "PA") or (mode in ("RGB", "L") and "transparency" in img.info):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
        notes.append(f"dropped the alpha channel of {mode} (composited over white)")
    elif mode in ("L", "1"):
        notes.append(f"converted grayscale ({mode}) to RGB")
    elif mode == "CMYK":
        notes.append("converted CMYK to RGB (Pillow's formula: a colour profile, if any, is not applied)")
    elif mode != "RGB":
        notes.append(f"converted {mode} to RGB")
    return np.asarray(img.convert("RGB"), np.float32) / 255.0, notes


def to_uint8(image) -> np.ndarray:
    """float [H, W, 3] in [0, 1] -> uint8, rounded."""
    return (np.clip(np.asarray(image, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def save_png(path: str, image) -> None:
    """Write float [H, W, 3] in [0, 1] (or uint8) as PNG, atomically."""
    array = image if np.asarray(image).dtype == np.uint8 else to_uint8(image)
    with storage.writer(path) as f:
        Image.fromarray(np.asarray(array)).save(f, format="PNG")


def contact_sheet(source, images, height: int = 256, gap: int = 4) -> np.ndarray:
    """uint8 row of the source beside each synthesised image, on white.

    All tiles share one scale (the tallest becomes `height` px), so a texture element is as large in
    the source as in the outputs, whatever their sizes; shorter tiles are top-aligned.
    """
    arrays = [to_uint8(image) for image in [source, *images]]
    scale = height / max(a.shape[0] for a in arrays)
    tiles = []
    for array in arrays:
        pil = Image.fromarray(array)
        size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
        tiles.append(np.asarray(pil if size == pil.size else pil.resize(size, Image.LANCZOS)))
    total = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    sheet = np.full((height, total, 3), 255, np.uint8)
    x = 0
    for tile in tiles:
        sheet[:tile.shape[0], x:x + tile.shape[1]] = tile
        x += tile.shape[1] + gap
    return sheet
