"""Images on disk <-> float32 [H, W, 3] RGB in [0, 1]. Every write is atomic."""

import contextlib
import os
import secrets
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
    """An image cannot be read; the message names the file and the fix."""


def load_image(path: str) -> tuple[np.ndarray, list[str]]:
    """Read an image file as RGB.

    Grayscale, RGBA, palette and 16-bit images are converted (alpha is composited over white,
    16-bit is scaled to [0, 1]); each conversion is reported in the returned notes.

    Returns:
      image: float32 [H, W, 3] RGB in [0, 1]; notes: human-readable conversions done.
    """
    if not os.path.exists(path):
        raise ImageError(f"input image {path} not found; check the path given to --input")
    try:
        with _opened(path) as img:
            wide = _is_16bit_colour(img)  # visible only before load(), in the decoder's raw mode
            img.load()
            if img.mode == "F" and not np.all(np.isfinite(np.asarray(img))):  # the only mode that can hold NaN
                raise ImageError(f"input image {path} holds NaN or infinite pixel values; give an image whose "
                                 "pixels are all finite")
            image, notes = _to_rgb(img)
            if wide:
                notes.insert(0, f"read 16-bit {img.mode} as 8 bits per channel")
            return image, notes
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"input image {path} cannot be read ({e}); give a PNG or JPEG file") from None


def check_image(path: str) -> tuple[int, int]:
    """(height, width) of an image file from its header, after checking that it can be read,
    without decoding its pixels (a batch job checks every source before it starts)."""
    if not os.path.exists(path):
        raise ImageError(f"input image {path} not found; check the path given to --input")
    try:
        with _opened(path) as img:
            size = img.size
            img.verify()  # structure and checksums (PNG CRCs): catches truncated and corrupt files
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"input image {path} cannot be read ({e}); give a PNG or JPEG file") from None
    return size[1], size[0]


@contextlib.contextmanager
def _opened(path: str):
    """Image.open without Pillow's decompression-bomb warning: the job's memory budget
    (budget.check, from this header size) judges whether the pixels fit, and says what would.
    Pillow's hard limit (2 * Image.MAX_IMAGE_PIXELS) stays, as a one-line error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                yield img
        except Image.DecompressionBombError:
            raise ImageError(f"input image {path} has more than {2 * Image.MAX_IMAGE_PIXELS} pixels, Pillow's "
                             "limit against decompression bombs; give a smaller image") from None


def _is_16bit_colour(img: Image.Image) -> bool:
    """True for 16-bit-per-channel RGB(A), which Pillow decodes to 8 bits without saying so."""
    rawmodes = [t[3] for t in (img.tile or []) if len(t) > 3 and isinstance(t[3], str)]
    return img.mode in ("RGB", "RGBA") and any(r.startswith(("RGB;16", "RGBA;16")) for r in rawmodes)


def _to_rgb(img: Image.Image) -> tuple[np.ndarray, list[str]]:
    notes, mode = [], img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit int) grayscale: PIL's convert("RGB") would clip to 255, so scale.
        values = np.asarray(img, np.float64)
        top = 65535.0 if values.max() > 255 or mode.startswith("I;16") else 255.0
        gray = np.clip(values / top, 0, 1).astype(np.float32)
        notes.append(f"converted {mode} ({'16' if top > 255 else '8'}-bit) grayscale to RGB")
        return np.repeat(gray[..., None], 3, axis=-1), notes
    if mode == "F":
        gray = np.asarray(img, np.float32)
        gray = (gray - gray.min()) / max(float(np.ptp(gray)), 1e-12)
        notes.append("converted float grayscale to RGB (rescaled to [0, 1])")
        return np.repeat(gray[..., None], 3, axis=-1), notes
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        notes.append("converted palette image to RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "RGB" and "transparency" in img.info):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
        notes.append(f"dropped the alpha channel of {mode} (composited over white)")
    elif mode in ("L", "1"):
        notes.append(f"converted grayscale ({mode}) to RGB")
    elif mode != "RGB":
        notes.append(f"converted {mode} to RGB")
    return np.asarray(img.convert("RGB"), np.float32) / 255.0, notes


def to_uint8(image) -> np.ndarray:
    """float [H, W, 3] in [0, 1] -> uint8, rounded."""
    return (np.clip(np.asarray(image, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


TEMP_PREFIX, TEMP_TAG = ".tmp-", 8  # a temp file of atomic_path: .tmp-<root>-<8 hex digits><ext>


def temp_target(name: str) -> str | None:
    """The file name whose atomic_path temp file `name` is (`.tmp-a_seed0-1f2e3d4c.png` ->
    `a_seed0.png`), or None if `name` is not one. A killed save leaves such a file; this tells whose."""
    root, ext = os.path.splitext(name)
    body, tag = root[len(TEMP_PREFIX):-TEMP_TAG - 1], root[-TEMP_TAG - 1:]
    if not (root.startswith(TEMP_PREFIX) and body and tag[0] == "-"
            and all(c in "0123456789abcdef" for c in tag[1:])):
        return None
    return body + ext


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temp path beside `path`; on success rename it onto `path`, on failure remove it.

    The temp file is named for `path` (see temp_target), so the next run into the folder can remove
    the ones a kill left behind. An OSError names `path`, not the temp file that is gone."""
    root, ext = os.path.splitext(os.path.abspath(path))
    folder, stem = os.path.split(root)
    while True:
        tmp = os.path.join(folder, f"{TEMP_PREFIX}{stem}-{secrets.token_hex(TEMP_TAG // 2)}{ext}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the mode open() gives
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from e
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp):  # a full disk, say: name the file asked for
            raise OSError(e.errno, e.strerror or str(e), path) from e
        raise


def save_png(path: str, image) -> None:
    """Write float [H, W, 3] in [0, 1] (or uint8) as PNG, atomically."""
    array = image if np.asarray(image).dtype == np.uint8 else to_uint8(image)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array)).save(tmp, format="PNG")


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
