"""Validation of the images handed to :meth:`SegGradCAM.explain`.

Everything a user passes in is checked here, before TensorFlow sees it, so a bad
value produces a message that names it instead of a raw TensorFlow traceback.
"""

from __future__ import annotations

import numpy as np


def as_image_batch(images, expected_hwc: tuple) -> np.ndarray:
    """Turn array-like images into a validated float32 batch.

    Args:
        images: an (N, H, W, C) or (H, W, C) array-like of numbers.
        expected_hwc: the model's input shape without the batch axis; ``None`` entries
            accept any size.

    Returns:
        A float32 array of shape (N, H, W, C).

    Raises:
        TypeError: the images are not numeric (strings, objects, ...).
        ValueError: wrong rank, wrong channel count or size, an empty batch, NaN or Inf.

    Example:
        >>> as_image_batch(np.zeros((8, 8, 3)), (None, None, 3)).shape
        (1, 8, 8, 3)
    """
    try:
        array = np.asarray(images)
    except (ValueError, TypeError) as error:
        raise TypeError(f"images could not be read as an array: {error}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"images must be numeric (float or integer), got an array of dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"images must be real numbers, got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[np.newaxis]
    if array.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C) or (H, W, C); got shape {array.shape} (rank {array.ndim})")
    if array.shape[0] == 0:
        raise ValueError("images is an empty batch (N = 0); pass at least one image")
    want_h, want_w, want_c = expected_hwc
    if want_c is not None and array.shape[3] != want_c:
        raise ValueError(
            f"images have {array.shape[3]} channels but the model expects {want_c} "
            f"(image batch shape {array.shape}, expected (N, H, W, {want_c}))"
        )
    for axis, want, name in ((1, want_h, "height"), (2, want_w, "width")):
        if want is not None and array.shape[axis] != want:
            raise ValueError(
                f"images have {name} {array.shape[axis]} but the model expects {want} "
                f"(image batch shape {array.shape}, expected (N, {want_h}, {want_w}, {want_c}))"
            )
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise ValueError(f"images have an empty spatial size: shape {array.shape}")
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        count = int((~finite).sum())
        raise ValueError(
            f"images contain {count} NaN or Inf value(s); the first is at (image, row, col, "
            f"channel) = {tuple(int(i) for i in bad)}. Clean or impute them before explaining."
        )
    return array
