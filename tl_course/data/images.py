"""Reading real-world images safely: every odd file becomes either an RGB image or a clear error.

Handled: grayscale, 16-bit, palette, RGBA/LA (composited on white), CMYK, animated GIF (first
frame), EXIF rotation, huge images (decoded at reduced size), tiny images (kept; the transform
upsamples them). Refused with :class:`ImageError`: missing files, non-images, corrupt or truncated
files, images above :data:`MAX_PIXELS` pixels.

Usage::

    from tl_course.images import load_image
    img = load_image("photo.jpg")   # PIL.Image in RGB
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
MAX_PIXELS = 16_000 * 16_000
"""Images with more pixels than this are refused before decoding (a decompression bomb or a scan,
not a photo); below it, large JPEGs are decoded at reduced size."""
DEFAULT_MAX_SIDE = 1024
"""Larger images are reduced to this longest side when loaded: models use 224 px anyway."""


class ImageError(ValueError):
    """An image file that cannot be used, with the reason and what to do about it."""


def is_image_file(path: str | Path) -> bool:
    """True when ``path`` has an image file extension (case-insensitive).

    Usage: ``[p for p in folder.iterdir() if is_image_file(p)]``
    """
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def visible_files(folder: str | Path) -> list[Path]:
    """Every file under ``folder`` (recursively, sorted) except hidden ones: a name starting with
    ``.`` anywhere in its path below ``folder`` (``.DS_Store``, AppleDouble ``._photo.jpg``,
    ``.thumbnails/``) is skipped, as every loader of the course skips it.

    Usage: ``[p for p in visible_files("photos") if is_image_file(p)]``
    """
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | Path, max_side: int | None = DEFAULT_MAX_SIDE,
               min_side: int | None = None) -> Image.Image:
    """Open any image file as an RGB ``PIL.Image``, or raise :class:`ImageError` saying why not.

    Larger images are reduced to ``max_side`` pixels on their longest side. With ``min_side``, a
    JPEG is decoded directly at the smallest power-of-two reduction (libjpeg's DCT scaling) that
    keeps both sides at least ``min_side`` pixels: several times faster than decoding it whole and
    then shrinking it, for models that use a few hundred pixels anyway.

    Usage: ``img = load_image("ants/0013035.jpg")``; ``load_image(path, min_side=256)``
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"Image not found: {path}. Check the path (relative paths start at "
                         f"{Path.cwd()}).")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file.")
    previous_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # The course's own limit is MAX_PIXELS (checked below from the header, before decoding);
            # PIL's default (89.5 Mpx) would refuse images the course accepts and decodes reduced.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            img = Image.open(path)
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{path} is {width}x{height} pixels, more than the {MAX_PIXELS:,} "
                                 "this course accepts; resize it first.")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP: use the first frame
            if img.format == "JPEG":
                if min_side:
                    img.draft("RGB", (min_side, min_side))  # both sides stay >= min_side
                elif max_side and max(width, height) > 2 * max_side:
                    img.draft("RGB", (max_side, max_side))  # decode huge JPEGs at reduced size, fast
            img.load()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path} is not an image PIL can read (unknown or unsupported format). "
                         "Remove it from the dataset or convert it to JPEG/PNG.") from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path} is too large to decode safely ({exc}). Resize it first.") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path} is corrupt or truncated ({exc}). Re-download or remove it.") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF must not make a readable image unusable
        pass
    img = _to_rgb(img)
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return img
