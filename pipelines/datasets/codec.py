"""Images as stored in a shard's ``image`` column, and back to uint8 ``[n, C, H, W]`` arrays.

Two encodings. ``raw``: a fixed-size list of C*H*W uint8 per row, decoded by a reshape of the
column's buffer (no per-image work): right for small images, where PNG saves little (CIFAR's
32x32 shrink by ~20%) and costs a decode per image. ``png``: lossless, so a decoded image equals
the imported pixels bit for bit, and 2-4x smaller on natural images of useful size. ``auto``
picks raw up to RAW_MAX_BYTES per image. NumPy and PIL only: the driver reads manifests and
labels without torch, and loader workers decode without it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

ENCODINGS = ("raw", "png")
RAW_MAX_BYTES = 64 * 64 * 3  # auto: raw up to 64x64 RGB (12 KB a row), PNG above
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class ImageDecodeError(ValueError):
    """One stored image that is not what the manifest says; ``row`` is its index in the decoded batch."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row = row
        self.reason = reason


def choose_encoding(encoding: str, shape: Sequence[int]) -> str:
    """``raw`` or ``png`` for ``encoding`` (``auto`` decides by the size of one image)."""
    if encoding == "auto":
        return "raw" if int(np.prod(shape)) <= RAW_MAX_BYTES else "png"
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding: expected auto, {' or '.join(ENCODINGS)}; got {encoding!r}")
    return encoding


def image_type(encoding: str, shape: Sequence[int]) -> pa.DataType:
    """The Arrow type of the ``image`` column: a fixed-size uint8 list (raw) or binary (png)."""
    if encoding == "raw":
        return pa.list_(pa.field("item", pa.uint8(), nullable=False), int(np.prod(shape)))
    return pa.binary()


def encode(images: np.ndarray, encoding: str) -> pa.Array:
    """uint8 ``[n, C, H, W]`` as an ``image`` column of ``encoding``."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if encoding == "raw":
        values = pa.array(images.reshape(-1), pa.uint8())
        return pa.FixedSizeListArray.from_arrays(values, type=image_type("raw", images.shape[1:]))
    return pa.array([_png(image) for image in images], pa.binary())


def _png(image: np.ndarray) -> bytes:
    """One CHW uint8 image as PNG bytes (grey, RGB or RGBA by its channel count)."""
    from PIL import Image

    channels = image.shape[0]
    if channels not in _PIL_MODES:
        raise ValueError(f"png: expected 1, 3 or 4 channels, got {channels}; use encoding raw")
    pixels = image[0] if channels == 1 else np.moveaxis(image, 0, -1)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), _PIL_MODES[channels]).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decode(column: pa.Array | pa.ChunkedArray, encoding: str, shape: Sequence[int]) -> np.ndarray:
    """An ``image`` column as uint8 ``[n, C, H, W]``; ImageDecodeError names the first bad row."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    c, h, w = (int(v) for v in shape)
    if column.null_count:
        row = int(np.flatnonzero(~np.asarray(column.is_valid()))[0])
        raise ImageDecodeError(row, "the image is null")
    if encoding == "raw":
        pixels = column.flatten()
        if pixels.null_count:  # a nullable item type (pyarrow's default) that does hold a null
            row = int(np.flatnonzero(~np.asarray(pixels.is_valid()))[0]) // (c * h * w)
            raise ImageDecodeError(row, "the image holds a null pixel")
        return pixels.to_numpy(zero_copy_only=False).reshape(len(column), c, h, w)
    out = np.empty((len(column), c, h, w), dtype=np.uint8)
    for row, data in enumerate(column.to_pylist()):
        out[row] = _unpng(row, data, (c, h, w))
    return out


def _one_line(exc: BaseException) -> str:
    """PIL's text on one line (shards.one_line's job; codec is imported by shards, so not from there)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _unpng(row: int, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """PNG bytes as one CHW image of ``shape``, or ImageDecodeError saying what is wrong."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            pixels = np.asarray(image)
    except UnidentifiedImageError as exc:  # its text names the BytesIO object, not the bytes
        raise ImageDecodeError(
            row, f"the image does not decode as PNG (its {len(data)} bytes are no image format PIL knows)"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(row, f"the image does not decode as PNG ({_one_line(exc)})") from exc
    chw = pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)
    if chw.shape != shape or chw.dtype != np.uint8:
        raise ImageDecodeError(row, f"the image decodes to {chw.dtype} {chw.shape}, expected uint8 {shape}")
    return chw
