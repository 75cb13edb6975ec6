"""tl_course.data.images: every odd file becomes an RGB image or a clear ImageError."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tl_course.data import images
from tl_course.data.images import ImageError, is_image_file, load_image


def _assert_rgb(img, size=None):
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    if size is not None:
        assert img.size == size


def test_is_image_file_case_insensitive(tmp_path):
    assert is_image_file("a/b/photo.JPG")
    assert is_image_file(tmp_path / "x.jpeg")
    assert is_image_file("x.gif") and is_image_file("x.webp") and is_image_file("x.tiff")
    assert not is_image_file("notes.txt")
    assert not is_image_file("README")
    assert not is_image_file(".DS_Store")


def test_rgb_png_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    img = load_image(tmp_path / "x.png")
    _assert_rgb(img, (20, 12))
    assert np.array_equal(np.asarray(img), arr)


def test_grayscale(tmp_path):
    Image.new("L", (10, 8), 77).save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    _assert_rgb(img, (10, 8))
    assert img.getpixel((3, 3)) == (77, 77, 77)


def test_16_bit_grayscale_is_rescaled(tmp_path):
    arr = np.zeros((4, 6), dtype=np.uint16)
    arr[:, 3:] = 60000
    Image.fromarray(arr).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    img = load_image(tmp_path / "deep.png")
    _assert_rgb(img, (6, 4))
    out = np.asarray(img)
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, 5].tolist() == [255, 255, 255]


def test_16_bit_constant_image_does_not_divide_by_zero(tmp_path):
    Image.fromarray(np.full((3, 3), 1234, dtype=np.uint16)).save(tmp_path / "flat.png")
    img = load_image(tmp_path / "flat.png")
    _assert_rgb(img, (3, 3))
    assert np.asarray(img).max() == 0


def test_rgba_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    im.putpixel((0, 0), (0, 0, 255, 0))  # fully transparent blue
    im.save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    _assert_rgb(img, (4, 4))
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((2, 2)) == (255, 0, 0)


def test_la_image(tmp_path):
    im = Image.new("LA", (3, 3), (0, 255))
    im.putpixel((1, 1), (0, 0))
    im.save(tmp_path / "la.png")
    img = load_image(tmp_path / "la.png")
    _assert_rgb(img, (3, 3))
    assert img.getpixel((0, 0)) == (0, 0, 0)
    assert img.getpixel((1, 1)) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 0, 200, 0] + [0] * (256 * 3 - 6))
    im.putpixel((0, 0), 0)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    assert Image.open(tmp_path / "p.png").mode == "P"
    img = load_image(tmp_path / "p.png")
    _assert_rgb(img, (4, 4))
    assert img.getpixel((0, 0)) == (255, 255, 255)  # transparent index -> white background
    assert img.getpixel((3, 3)) == (0, 200, 0)


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 3
    img = load_image(tmp_path / "anim.gif")
    _assert_rgb(img, (8, 8))
    r, g, b = img.getpixel((4, 4))
    assert r > 200 and g < 50 and b < 50


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    img = load_image(tmp_path / "cmyk.jpg")
    _assert_rgb(img, (10, 10))
    r, g, b = img.getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60  # cyan 0, magenta+yellow full = red


def test_tiny_1x1_is_kept(tmp_path):
    Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "tiny.png")
    img = load_image(tmp_path / "tiny.png")
    _assert_rgb(img, (1, 1))
    assert img.getpixel((0, 0)) == (1, 2, 3)


def test_exif_rotation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    Image.new("RGB", (40, 20), (10, 120, 200)).save(tmp_path / "rot.jpg", exif=exif)
    img = load_image(tmp_path / "rot.jpg")
    _assert_rgb(img, (20, 40))


def test_huge_jpeg_is_reduced(tmp_path):
    Image.new("RGB", (5000, 5000), (30, 90, 150)).save(tmp_path / "huge.jpg", quality=50)
    img = load_image(tmp_path / "huge.jpg")
    _assert_rgb(img)
    assert max(img.size) <= images.DEFAULT_MAX_SIDE
    assert img.size[0] == img.size[1]  # aspect ratio kept
    small = load_image(tmp_path / "huge.jpg", max_side=100)
    assert max(small.size) == 100


def test_large_png_is_thumbnailed_keeping_aspect(tmp_path):
    Image.new("RGB", (1200, 600), (0, 0, 0)).save(tmp_path / "wide.png")
    img = load_image(tmp_path / "wide.png", max_side=300)
    assert img.size == (300, 150)


def test_over_max_pixels_is_refused(tmp_path, monkeypatch):
    Image.new("RGB", (30, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 500)  # 900 pixels: over the limit, under PIL's 2x error
    with pytest.raises(ImageError, match=r"30x30 pixels.*resize"):
        load_image(tmp_path / "big.png")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("RGB", (40, 40)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 100)  # PIL errors above 2x the limit, before decoding
    with pytest.raises(ImageError, match="too large.*Resize it first"):
        load_image(tmp_path / "bomb.png")


def test_the_course_limit_replaces_pils_and_pils_is_restored(tmp_path, monkeypatch):
    Image.new("RGB", (40, 40)).save(tmp_path / "ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL alone would refuse this image
    assert load_image(tmp_path / "ok.png").size == (40, 40)
    assert Image.MAX_IMAGE_PIXELS == 100  # left as it was
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ImageError):
        load_image(tmp_path / "bad.png")
    assert Image.MAX_IMAGE_PIXELS == 100  # also after an error


def test_a_real_90_megapixel_jpeg_is_decoded_at_reduced_size(tmp_path):
    """Above PIL's own cap (89.5 Mpx) and below the course's MAX_PIXELS: accepted, decoded reduced."""
    Image.new("L", (9500, 9500), 128).save(tmp_path / "scan.jpg", quality=50)  # 90.25 Mpx, 1 MB
    assert 9500 * 9500 > Image.MAX_IMAGE_PIXELS and 9500 * 9500 < images.MAX_PIXELS
    assert load_image(tmp_path / "scan.jpg").size == (1024, 1024)
    assert min(load_image(tmp_path / "scan.jpg", min_side=256, max_side=None).size) < 9500  # libjpeg's scaling


def test_truncated_jpeg(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated") as info:
        load_image(tmp_path / "cut.jpg")
    assert "cut.jpg" in str(info.value)


def test_random_bytes_named_jpg(tmp_path):
    (tmp_path / "fake.jpg").write_bytes(np.random.default_rng(2).bytes(2048))
    with pytest.raises(ImageError, match="not an image") as info:
        load_image(tmp_path / "fake.jpg")
    assert "fake.jpg" in str(info.value)


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError):
        load_image(tmp_path / "empty.png")


def test_text_file_with_image_name(tmp_path):
    (tmp_path / "notes.png").write_text("hello, I am not a picture\n")
    with pytest.raises(ImageError, match="convert it"):
        load_image(tmp_path / "notes.png")


def test_missing_path(tmp_path):
    with pytest.raises(ImageError, match="not found") as info:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(info.value)


def test_directory(tmp_path):
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageError, match="folder, not an image"):
        load_image(tmp_path / "dir.jpg")


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)
