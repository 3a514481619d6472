"""Pixels as people store them, turned into the uint8 RGB the task trains on.

- Orientation: an image with an EXIF Orientation tag is turned upright (`PIL.ImageOps.exif_transpose`),
  because annotation tools show (and label) phone photos upright.
- Depth: 16-bit images (PNG `I;16`, numpy uint16) are scaled to 8 bits (v * 255 / 65535, rounded), never
  clipped; 32-bit integer images (`I`, how some PIL versions open 16-bit PNGs) are read as 16-bit values.
  Float images are refused.
- Shape: `square_pad` pads a non-square image to a square (black, centred, whole pixels) so that resizing
  keeps the aspect ratio, as the COCO crops do; the caller shifts the keypoints by the returned offset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from search.task.errors import DataError

__all__ = ["to_uint8", "read_image", "square_pad", "resize_square"]


def to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    """uint8 unchanged; uint16 (or int values in [0, 65535]) scaled by 255/65535. Raises DataError."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16 or (
        np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 and a.max() <= 65535
    ):
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    raise DataError(f"{what}: pixels must be 8- or 16-bit integers, got {a.dtype}")


def read_image(path: Path, *, what: str) -> tuple[np.ndarray, tuple[int, int], int]:
    """(upright uint8 (H,W,3) pixels, (width, height) as stored before turning, EXIF orientation).

    `what` starts every error message (the annotation file and image id that referenced `path`).
    """
    if not path.is_file():
        raise DataError(f"{what}: image file {path} not found")
    try:
        with Image.open(path) as im:
            stored = im.size
            orientation = int(im.getexif().get(0x0112, 1) or 1)
            up = ImageOps.exif_transpose(im)
            mode = up.mode
            if mode.startswith("I;16") or mode == "I":
                arr = to_uint8(np.asarray(up), f"{what}: {path}")
                return np.repeat(arr[..., None], 3, axis=2), stored, orientation
            if mode == "F":
                raise DataError(f"{what}: {path}: float images are not supported; save 8- or 16-bit")
            return np.asarray(up.convert("RGB")), stored, orientation
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{what}: cannot read image {path} ({e})") from None


def square_pad(img: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad (H,W,3) to (S,S,3), S = max(H, W), image centred; returns the padded image and (dx, dy)."""
    h, w = img.shape[:2]
    if h == w:
        return img, (0, 0)
    side = max(h, w)
    dx, dy = (side - w) // 2, (side - h) // 2
    out = np.zeros((side, side, img.shape[2]), img.dtype)
    out[dy : dy + h, dx : dx + w] = img
    return out, (dx, dy)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a square (S,S,3) uint8 image to (size,size,3); pixel centres map as (x+.5)*r-.5."""
    if img.shape[0] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
