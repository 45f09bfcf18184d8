"""Image files read safely and prepared the way a dataset's own images were prepared.

A model trained on images records how its training images were made (its
``image_preparation``); a picture given to it later goes through the same steps, so that
a digit drawn on any canvas reaches the network looking like the digits it learned from.

==================  =======================================================================
preparation         steps (ink is light on a dark background in these datasets)
==================  =======================================================================
``"mnist"``         ink cropped, fitted into 20×20 with its aspect kept, placed in 28×28 so
                    that its centre of mass is the centre (LeCun et al.'s MNIST)
``"fashion-mnist"`` content cropped, fitted into 28×28 with its aspect kept, centred
                    (Zalando's Fashion-MNIST)
``"digits"``        ink cropped, fitted into 32×32 with its aspect kept, centred,
                    thresholded, and the ink pixels of each 4×4 block counted: 8×8 values
                    0..16 (the UCI optdigits set behind scikit-learn's digits)
``"resize"``        the whole picture resized to the input shape (photos, user arrays)
==================  =======================================================================

The three ink preparations invert a picture whose border is light (dark ink on paper)
unless told otherwise, and work for any input shape (the sizes above scale with it).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from handgrad.data._files import require_file
from handgrad.errors import DataFormatError

__all__ = [
    "PREPARATIONS",
    "load_image_files",
    "load_images",
    "preparation_for",
    "prepare_image",
    "read_image",
]

PREPARATIONS = ("mnist", "fashion-mnist", "digits", "resize")
_MAX_IMAGE_FILE = 2**28
# A pixel belongs to the ink (for cropping and for the digits' bitmap) when it holds at
# least this fraction of the darkest ink: anti-aliased edges and paper grain stay outside.
_INK_LEVEL = 0.5
_DATASET_PREPARATIONS = {
    "mnist": "mnist",
    "mnist-t10k": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion-mnist-t10k": "fashion-mnist",
    "digits": "digits",
}


def preparation_for(dataset: str | None) -> str:
    """The preparation of a named dataset's images ("resize" for any other images)."""
    key = (dataset or "").lower().replace("_", "-")
    return _DATASET_PREPARATIONS.get(key, "resize")


def read_image(path: str | os.PathLike, mode: str = "L") -> np.ndarray:
    """One image file (anything Pillow opens) as uint8 pixels, (H, W) for "L" (grey) or
    (H, W, 3) for "RGB".

    Raises
    ------
    DataFormatError
        The file is not an image Pillow can decode, or is too large to be one.
    """
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    try:
        # from memory: a chunk length that lies then cannot make Pillow allocate more
        # than the file holds (a file object would allocate the claimed size)
        with Image.open(io.BytesIO(_read_limited(path))) as image:
            return np.asarray(image.convert(mode), dtype=np.uint8)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
    ) as exc:
        raise DataFormatError(f"{path}: not a readable image ({exc})") from None


def load_image_files(
    paths: Iterable[str | os.PathLike], shape: tuple[int, int] = (28, 28), mode: str = "L"
) -> np.ndarray:
    """Read image files into one uint8 array, each resized whole to ``shape``.

    Returns
    -------
    images : ndarray (N, height, width) for "L", (N, height, width, 3) for "RGB"; uint8

    Raises
    ------
    DataFormatError
        A file is not an image Pillow can decode.
    """
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    images = [_resize(read_image(path, mode), shape) for path in paths]
    if not images:
        raise ValueError("paths is empty: no image files to read")
    return np.stack(images)


def load_images(
    paths: Sequence[str | os.PathLike],
    shape: Sequence[int],
    *,
    preparation: str = "resize",
    pixel_max: float = 255.0,
    invert: bool | None = None,
) -> np.ndarray:
    """Image files as samples like a model's training images.

    Parameters
    ----------
    paths : image files
    shape : the training images' shape, (H, W) or (H, W, 3)
    preparation : one of :data:`PREPARATIONS` (see the module docstring)
    pixel_max : the largest pixel value of the training images (255, or 16 for digits)
    invert : True/False to invert or not; None inverts pictures with a light border for
        the ink preparations, and never for "resize"

    Returns
    -------
    images : ndarray (N, *shape) float64, values in 0..pixel_max
    """
    shape = tuple(int(s) for s in shape)
    mode = "RGB" if len(shape) == 3 and shape[2] == 3 else "L"
    images = [
        prepare_image(read_image(path, mode), shape, preparation, invert=invert) for path in paths
    ]
    if not images:
        raise ValueError("paths is empty: no image files to read")
    return np.stack(images) * float(pixel_max)


def prepare_image(
    image: np.ndarray, shape: Sequence[int], preparation: str, *, invert: bool | None = None
) -> np.ndarray:
    """Prepare one uint8 picture (H, W) or (H, W, 3): float64 ``shape`` in [0, 1].

    See :func:`load_images` for the arguments.
    """
    if preparation not in PREPARATIONS:
        raise ValueError(
            f"image preparation must be one of {', '.join(PREPARATIONS)}, got {preparation!r}"
        )
    shape = tuple(int(s) for s in shape)
    if preparation == "resize":
        resized = _resize(image, shape[:2]).astype(np.float64) / 255.0
        return (1.0 - resized if invert else resized).reshape(shape)
    if image.ndim != 2 or len(shape) != 2:
        raise ValueError(f"the {preparation!r} preparation is for grey images, not {shape}")
    ink = _ink(image, invert)
    if preparation == "mnist":
        box = (round(shape[0] * 20 / 28), round(shape[1] * 20 / 28))
        return _place(_fit(_crop(ink), box), shape, by_mass=True)
    if preparation == "fashion-mnist":
        return _place(_fit(_crop(ink), shape), shape, by_mass=False)
    bitmap_shape = (4 * shape[0], 4 * shape[1])
    bitmap = _place(_fit(_crop(ink), bitmap_shape), bitmap_shape, by_mass=True)
    on = bitmap >= _INK_LEVEL
    return on.reshape(shape[0], 4, shape[1], 4).sum(axis=(1, 3)) / 16.0


def _ink(image: np.ndarray, invert: bool | None) -> np.ndarray:
    """Grey pixels (H, W) -> ink in [0, 1] on a background of 0."""
    grey = image.astype(np.float64) / 255.0
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if invert is None:
        invert = float(border.mean()) > 0.5
    if invert:
        grey, border = 1.0 - grey, 1.0 - border
    # paper that is grey rather than white (a photo, a scan) becomes background
    background = float(np.median(border))
    if background >= 1.0:
        return np.zeros_like(grey)
    return np.clip((grey - background) / (1.0 - background), 0.0, 1.0)


def _crop(ink: np.ndarray) -> np.ndarray:
    """The bounding box of the ink; a blank picture stays as it is."""
    peak = float(ink.max())
    if peak == 0.0:
        return ink
    rows = np.flatnonzero((ink >= _INK_LEVEL * peak).any(axis=1))
    cols = np.flatnonzero((ink >= _INK_LEVEL * peak).any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] / peak


def _fit(ink: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """Resize so that the ink fills ``box`` along one side, its aspect kept."""
    factor = min(box[0] / ink.shape[0], box[1] / ink.shape[1])
    height = min(box[0], max(1, round(ink.shape[0] * factor)))
    width = min(box[1], max(1, round(ink.shape[1] * factor)))
    picture = Image.fromarray(ink.astype(np.float32), mode="F")
    resized = picture.resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)


def _place(ink: np.ndarray, shape: tuple[int, int], *, by_mass: bool) -> np.ndarray:
    """Put ``ink`` on a blank ``shape`` canvas, its centre of mass (or its box) centred."""
    canvas = np.zeros(shape)
    height, width = ink.shape
    top, left = (shape[0] - height) // 2, (shape[1] - width) // 2
    if by_mass and ink.sum() > 0:
        rows, cols = np.indices(ink.shape)
        mass_row, mass_col = (rows * ink).sum() / ink.sum(), (cols * ink).sum() / ink.sum()
        # MNIST's centres of mass sit at (14, 14) of 28×28, the canvas's middle
        top = int(np.clip(round(shape[0] / 2 - mass_row), 0, shape[0] - height))
        left = int(np.clip(round(shape[1] / 2 - mass_col), 0, shape[1] - width))
    canvas[top : top + height, left : left + width] = ink
    return canvas


def _resize(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    height, width = (int(s) for s in shape[:2])
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _read_limited(path: str | os.PathLike) -> bytes:
    require_file(path, "image file")
    size = os.path.getsize(path)
    if size > _MAX_IMAGE_FILE:
        raise DataFormatError(f"{path}: {size} bytes, too large for an image file")
    with open(path, "rb") as handle:
        return handle.read()
