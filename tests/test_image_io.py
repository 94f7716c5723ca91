"""image_io: every image mode becomes float32 RGB in [0, 1] with a note; writes are atomic."""

import os
import struct
import zlib

import numpy as np
import PIL
import pytest
from PIL import Image

from texsynth_jax import image_io, storage

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
        with storage.atomic_path(str(tmp_path / "keep.png")) as tmp:
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


# Issue 24: every Pillow mode converted with its real range, or refused in one line; EXIF orientation honoured.

def _load(tmp_path, img, fmt, **save):
    path = str(tmp_path / f"x.{fmt.lower()}")
    img.save(path, format=fmt, **save)
    return image_io.load_image(path)


def _tiff_int32(tmp_path, values):
    return _load(tmp_path, Image.fromarray(np.asarray(values, np.int32)), "TIFF")


@pytest.mark.parametrize("values,top,bits", [([[0, 100, 255]], 255, 8), ([[0, 300, 40000]], 65535, 16),
                                             ([[0, 70000, 2**31 - 1]], 2**31 - 1, 31)])
def test_32bit_integer_tiff_is_scaled_by_the_smallest_range_that_holds_it(tmp_path, values, top, bits):
    image, notes = _tiff_int32(tmp_path, values)
    np.testing.assert_allclose(image[..., 0], np.asarray(values) / top, rtol=1e-6)
    assert image.shape == (1, 3, 3)
    assert f"read as {bits}-bit" in notes[0] and "16-bit" not in notes[0].replace("read as 16-bit", "")


def test_32bit_integer_with_negative_values_is_refused_in_one_line(tmp_path):
    with pytest.raises(image_io.ImageError, match=r"negative values \(-5\); give an image with values >= 0") as e:
        _tiff_int32(tmp_path, [[0, -5, 100]])
    assert "\n" not in str(e.value)


def test_16bit_pgm_is_16bit_even_when_dark(tmp_path):
    # Pillow reads a PGM with maxval > 255 as mode I, its samples scaled to 0..65535: the container says 16 bits.
    path = tmp_path / "dark.pgm"
    path.write_bytes(b"P5\n3 1\n65535\n" + np.array([[0, 100, 200]], ">u2").tobytes())
    image, notes = image_io.load_image(str(path))
    np.testing.assert_allclose(image[0, :, 1], np.array([0, 100, 200]) / 65535, rtol=1e-6)
    assert "16-bit" in notes[0]


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16bit_tiff_is_divided_by_65535(tmp_path, mode):
    img = Image.new(mode, (3, 1))
    for x, v in enumerate([0, 300, 65535]):
        img.putpixel((x, 0), v)
    image, notes = _load(tmp_path, img, "TIFF")
    np.testing.assert_allclose(image[0, :, 2], np.array([0, 300, 65535]) / 65535, rtol=1e-6)
    assert "16-bit" in notes[0]


def test_float_images_keep_values_in_0_1_and_rescale_others(tmp_path):
    unit = np.array([[0.25, 0.5, 0.75]], np.float32)
    image, notes = _load(tmp_path, Image.fromarray(unit), "TIFF")
    np.testing.assert_allclose(image[..., 0], unit)  # not stretched to 0..1
    assert "kept" in notes[0]
    image, notes = _load(tmp_path, Image.fromarray(np.array([[-2.0, 0.0, 6.0]], np.float32)), "TIFF")
    np.testing.assert_allclose(image[0, :, 0], [0, 0.25, 1])
    assert "rescaled from -2..6" in notes[0]


def test_bilevel_la_pa_and_transparent_grayscale(tmp_path):
    image, notes = _load(tmp_path, Image.fromarray(np.array([[0, 1, 1]], bool)), "PNG")
    np.testing.assert_array_equal(image[0, :, 0], [0, 1, 1])
    assert "grayscale (1)" in notes[0]
    la = Image.fromarray(np.array([[[100, 255], [100, 0]]], np.uint8), "LA")
    image, notes = _load(tmp_path, la, "PNG")
    np.testing.assert_allclose(image[0, :, 1], [100 / 255, 1])  # the transparent pixel over white
    assert "alpha channel of LA" in notes[0]
    p = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pa = p.convert("PA")
    pa.putpixel((1, 0), (1, 0))  # blue, transparent
    image, notes = _load(tmp_path, pa, "TIFF")
    np.testing.assert_allclose(image[0], [[1, 0, 0], [1, 1, 1]])
    assert any("alpha channel of PA" in n for n in notes)
    gray = Image.fromarray(np.array([[10, 20]], np.uint8))
    image, notes = _load(tmp_path, gray, "PNG", transparency=20)
    np.testing.assert_allclose(image[0, :, 0], [10 / 255, 1])
    assert "alpha channel of L" in notes[0]


def test_cmyk_ycbcr_and_lab_are_converted_by_their_formulas(tmp_path):
    cmyk = Image.frombytes("CMYK", (3, 1), bytes([0, 255, 0, 0, 40, 80, 120, 0, 9, 9, 9, 255]))
    image, notes = _load(tmp_path, cmyk, "TIFF")
    np.testing.assert_allclose(image[0] * 255, [[255, 0, 255], [215, 175, 135], [0, 0, 0]], atol=0.5)  # 255 - CMY; K=255 black
    assert "CMYK" in notes[0]
    ycc = np.array([[[128, 128, 128], [76, 85, 255], [150, 44, 21]]], np.uint8)
    y, cb, cr = (ycc[0].astype(float) - [0, 128, 128]).T  # JFIF's full-range YCbCr
    expected = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)
    loads = [image_io._to_rgb(Image.fromarray(ycc, "YCbCr"), "x.tiff", False)]  # the decoded image, always
    try:  # and from a file, where this Pillow can write one: Pillow 12 (Gradio's pin) writes a YCbCr TIFF
        loads.append(_load(tmp_path, Image.fromarray(ycc, "YCbCr"), "TIFF"))  # it cannot read back
    except image_io.ImageError:
        assert int(PIL.__version__.split(".")[0]) < 13, "Pillow 13 writes YCbCr TIFF files"
    for image, notes in loads:
        np.testing.assert_allclose(image[0] * 255, np.clip(expected, 0, 255), atol=2)
        assert "YCbCr" in notes[0]
    # L* 50.2 and 100, neutral. A CIELab TIFF stores a* and b* signed (0: neutral); Pillow reads them offset
    # by 128 but writes its own bytes unchanged, so the bytes given here are the file's.
    lab = Image.frombytes("LAB", (2, 1), bytes([128, 0, 0, 255, 0, 0]))
    image, notes = _load(tmp_path, lab, "TIFF")
    lum = ((128 / 255 * 100 + 16) / 116) ** 3  # CIE L* -> Y, then sRGB's transfer curve
    assert image[0, 0] == pytest.approx([1.055 * lum ** (1 / 2.4) - 0.055] * 3, abs=3 / 255)
    assert image[0, 1] == pytest.approx([1, 1, 1], abs=2 / 255)
    assert "LAB" in notes[0]


def test_hsv_and_unknown_modes():
    # No file format opens as HSV or La: _to_rgb, which load_image calls, sees them as any mode.
    image, notes = image_io._to_rgb(Image.new("HSV", (2, 1), (170, 255, 255)), "x", False)  # hue 240 degrees
    np.testing.assert_allclose(image[0], [[0, 0, 1]] * 2, atol=1 / 255)
    assert "HSV" in notes[0]
    with pytest.raises(image_io.ImageError, match="pixel mode La, which cannot be read as RGB; save it as") as e:
        image_io._to_rgb(Image.new("La", (2, 1)), "x.png", False)
    assert "\n" not in str(e.value)


_UPRIGHT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
            5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
            8: lambda a: np.rot90(a, 1)}  # EXIF: where the stored first row and column belong on the screen


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_exif_orientation_is_honoured(tmp_path, orientation, fmt):
    stored = RNG.integers(0, 256, (6, 4, 3), dtype=np.uint8)  # not square: a quarter turn shows in the shape
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = str(tmp_path / f"o.{fmt.lower()}")
    Image.fromarray(stored).save(path, format=fmt, exif=exif.tobytes())
    image, notes = image_io.load_image(path)
    np.testing.assert_array_equal(image_io.to_uint8(image), _UPRIGHT[orientation](stored))
    assert image_io.check_image(path) == image.shape[:2]
    assert (orientation != 1) == any(f"EXIF orientation {orientation}" in n for n in notes)


def test_a_portrait_phone_jpeg_is_upright(tmp_path):
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:16, :16] = 255  # a white block at the stored top left
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera held upright: stored landscape, shown portrait
    path = str(tmp_path / "phone.jpg")
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    image, notes = image_io.load_image(path)
    assert image.shape == (64, 48, 3) and image_io.check_image(path) == (64, 48)
    assert image[:16, -16:].mean() > 0.9 and image[16:, :].mean() < 0.1  # the block at the top right
    assert "rotated 90 degrees clockwise" in notes[0]
