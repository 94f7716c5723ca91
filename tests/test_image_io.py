"""image_io: every image mode becomes float32 RGB in [0, 1] with a note; writes are atomic."""

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from texsynth_jax import image_io

RNG = np.random.default_rng(0)


def _png_16bit_rgb(path, rgb):
    """A 48-bit RGB PNG, written by hand: Pillow reads these but cannot write them."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _check(image, shape=(6, 5)):
    assert image.dtype == np.float32 and image.shape == (*shape, 3)
    assert image.min() >= 0 and image.max() <= 1


def test_rgb_is_read_unchanged(tmp_path):
    rgb = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    image, notes = image_io.load_image(str(tmp_path / "a.png"))
    _check(image)
    assert notes == []
    np.testing.assert_array_equal(image_io.to_uint8(image), rgb)


def test_grayscale(tmp_path):
    gray = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    image, notes = image_io.load_image(str(tmp_path / "g.png"))
    _check(image)
    assert "grayscale" in notes[0]
    np.testing.assert_allclose(image[..., 1], gray / 255.0, atol=1e-6)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((6, 5, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:3, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image, notes = image_io.load_image(str(tmp_path / "a.png"))
    _check(image)
    assert "alpha" in notes[0]
    np.testing.assert_allclose(image[0, 0], [1, 0, 0])
    np.testing.assert_allclose(image[5, 0], [1, 1, 1])


@pytest.mark.parametrize("transparent", [False, True])
def test_palette(tmp_path, transparent):
    rgb = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    img = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    if transparent:
        img.info["transparency"] = 0
    img.save(tmp_path / "p.png")
    image, notes = image_io.load_image(str(tmp_path / "p.png"))
    _check(image)
    assert "palette" in notes[0]
    assert transparent == any("alpha" in n for n in notes)


def test_16bit_grayscale_keeps_its_range(tmp_path):
    ramp = (np.arange(30, dtype=np.uint32).reshape(6, 5) * 2000).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    image, notes = image_io.load_image(str(tmp_path / "g16.png"))
    _check(image)
    assert "16-bit" in notes[0]
    np.testing.assert_allclose(image[..., 0], ramp / 65535.0, atol=1e-6)


def test_16bit_rgb_is_read_and_noted(tmp_path):
    rgb = np.zeros((6, 5, 3), np.uint16)
    rgb[..., 0], rgb[..., 1] = 65535, 32896
    _png_16bit_rgb(tmp_path / "c16.png", rgb)
    image, notes = image_io.load_image(str(tmp_path / "c16.png"))
    _check(image)
    assert "16-bit" in notes[0]
    np.testing.assert_allclose(image[0, 0], [1, 128 / 255, 0], atol=1 / 255)


def test_missing_and_corrupt_files_are_image_errors(tmp_path):
    with pytest.raises(image_io.ImageError, match="not found"):
        image_io.load_image(str(tmp_path / "missing.png"))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(image_io.ImageError, match="cannot be read"):
        image_io.load_image(str(tmp_path / "bad.png"))
    Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:120])
    with pytest.raises(image_io.ImageError, match="cannot be read"):
        image_io.load_image(str(tmp_path / "cut.png"))


def test_save_png_is_atomic_and_readable(tmp_path):
    image = RNG.random((6, 5, 3), dtype=np.float32)
    path = tmp_path / "out.png"
    image_io.save_png(str(path), image)
    assert os.listdir(tmp_path) == ["out.png"]
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image_io.to_uint8(image))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    (tmp_path / "keep.png").write_bytes(b"earlier")
    with pytest.raises(RuntimeError):
        with image_io.atomic_path(str(tmp_path / "keep.png")) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == ["keep.png"]
    assert (tmp_path / "keep.png").read_bytes() == b"earlier"


def test_contact_sheet_puts_the_source_beside_each_image_at_one_scale():
    source = np.zeros((20, 40, 3), np.float32)
    sheet = image_io.contact_sheet(source, [np.ones((10, 10, 3), np.float32)] * 2, height=16, gap=2)
    assert sheet.dtype == np.uint8 and sheet.shape == (16, 32 + 2 + 8 + 2 + 8, 3)
    assert (sheet[:8, 34:42] == 255).all() and sheet[:16, :32].max() == 0  # outputs: 8 px, source: 16 px
    assert (sheet[8:, 34:42] == 255).all()  # below the shorter tiles: white


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
