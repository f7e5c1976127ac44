"""Synthetic segmentation data made on the spot, and the samples and models that ship with the package.

Three generators, all deterministic from a seed and returning numpy arrays:

- :func:`texture_shapes`: disks (class 1), rectangles (2) and triangles (3) on textured
  backgrounds (class 0); textures are crops of ``skimage.data`` images that load offline.
- :func:`texture_digits`: one digit 0-9 rendered with OpenCV's Hershey fonts (random font,
  scale, rotation, thickness and position), textured, on a textured background; 11 classes
  (0 background, digit d is class d + 1), 64x64, in the style of the paper's TextureMNIST.
- :func:`biased_shapes`: texture shapes where every image that contains a disk has one
  specific texture ("bias texture") in its top-left tile, and no other image has it, so a
  model can learn the tile as a shortcut for "disk"; ``biased=False`` makes the control set
  (the texture in a random half of the tiles) and ``texture=`` the test variants (bias removed,
  bias inserted). Returns the tile mask as well.

Example:
    >>> images, labels = texture_shapes(4, seed=0)
    >>> images.shape, labels.shape
    ((4, 128, 128, 3), (4, 128, 128))
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

import cv2
import numpy as np

SHAPE_CLASSES = ("background", "disk", "rectangle", "triangle")
DIGIT_CLASSES = ("background",) + tuple(str(d) for d in range(10))
TEXTURES = ("brick", "grass", "gravel", "camera", "coins", "cell", "moon", "clock")
BIAS_TEXTURE = "checkerboard"
BIAS_CLASS = 1
BIAS_SIZE = 64  # image side of biased_shapes and of the shipped biased_unet and control_unet
BIAS_VARIANTS = ("drawn", "none", "all")  # biased_shapes(texture=...): which tiles show the texture
# Seeds of the held-out sets on which the shipped models are evaluated (training uses seed 0).
# biased_unet and control_unet share one held-out seed: the same images, tiles painted as each
# model's training set paints them (biased=True / biased=False).
HELD_OUT_SEEDS = {"shapes_unet": 10_001, "digits_unet": 20_001, "biased_unet": 30_001, "control_unet": 30_001}
HELD_OUT_SIZES = {"shapes_unet": 200, "digits_unet": 300, "biased_unet": 200, "control_unet": 200}
# Seed of the bias study's images (examples/bias_study.py, tests/test_bias_study.py): disjoint
# from the training (0) and held-out (30_001) seeds.
BIAS_STUDY_SEED = 40_001
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)


@functools.lru_cache(maxsize=None)
def texture(name: str) -> np.ndarray:
    """A grayscale float32 texture in [0, 1] from ``skimage.data`` (cached, read-only)."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 3:
        image = image[..., :3].mean(axis=-1)
    image = image.astype(np.float32)
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    if name == "checkerboard":  # 8 x 8 squares of 25 pixels: 16 x 16 squares of 20 pixels
        image = cv2.resize(image, (160, 160), interpolation=cv2.INTER_NEAREST)
        image = np.tile(image, (2, 2))  # a 64-pixel image then shows squares of 4 to 7 pixels
    image.setflags(write=False)
    return image


def _patch(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    """A random (size, size, 3) tinted crop of a texture."""
    source = texture(name)
    scale = rng.uniform(0.6, 1.0)
    side = max(size, int(min(source.shape) * scale))
    row = rng.integers(0, source.shape[0] - side + 1)
    col = rng.integers(0, source.shape[1] - side + 1)
    crop = cv2.resize(source[row : row + side, col : col + side], (size, size), interpolation=cv2.INTER_AREA)
    tint = rng.uniform(0.35, 1.0, size=3).astype(np.float32)
    return (0.15 + 0.85 * crop[..., np.newaxis]) * tint


def _draw_shape(rng, kind: int, size: int) -> np.ndarray:
    """A bool mask of one shape of ``kind`` (1 disk, 2 rectangle, 3 triangle)."""
    canvas = np.zeros((size, size), np.uint8)
    extent = rng.uniform(0.12, 0.26) * size
    center = rng.uniform(extent, size - extent, size=2)
    if kind == 1:
        cv2.circle(canvas, (int(center[1]), int(center[0])), int(extent), 1, thickness=-1)
    elif kind == 2:
        half = extent * rng.uniform(0.6, 1.0, size=2)
        angle = rng.uniform(0, 180)
        box = cv2.boxPoints(((center[1], center[0]), (2 * half[1], 2 * half[0]), angle))
        cv2.fillPoly(canvas, [np.round(box).astype(np.int32)], 1)
    else:
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.2, 0.2, 3)
        points = np.stack([center[1] + extent * 1.2 * np.cos(angles), center[0] + extent * 1.2 * np.sin(angles)], axis=1)
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas.astype(bool)


def _place_apart(rng, kinds: list[int], size: int, keep_out: np.ndarray, tries: int = 20) -> list:
    """Draw shapes that neither touch each other nor ``keep_out``; a shape that finds no
    free place in ``tries`` attempts is left out (the first one always gets a place)."""
    taken = keep_out.copy()
    objects = []
    for kind in kinds:
        for _ in range(tries):
            mask = _draw_shape(rng, kind, size)
            grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if not (grown & taken).any():
                objects.append((mask, kind))
                taken |= grown
                break
    return objects


def _compose(rng, size: int, background: str, objects: list[tuple[np.ndarray, int]], textures=TEXTURES):
    """Paint objects (mask, class) over a textured background.

    Objects are a flat colour with a faint texture of their own, so they stand out from the
    background by colour and texture; what tells the classes apart is their geometry.
    """
    image = _patch(rng, background, size)
    labels = np.zeros((size, size), np.uint8)
    for mask, cls in objects:
        name = textures[rng.integers(len(textures))]
        while name == background:
            name = textures[rng.integers(len(textures))]
        colour = rng.uniform(0.2, 1.0, size=3).astype(np.float32)
        fill = 0.7 * colour + 0.3 * _patch(rng, name, size)
        image[mask] = fill[mask]
        labels[mask] = cls
    noise = rng.normal(0, 0.03, image.shape).astype(np.float32)
    return np.clip(image + noise, 0, 1), labels


def texture_shapes(n: int, size: int = 128, seed: int = 0, max_shapes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Images of textured disks, rectangles and triangles.

    Args:
        n: number of images.
        size: image side in pixels.
        seed: everything is drawn from ``numpy.random.default_rng(seed)``.
        max_shapes: 1 to ``max_shapes`` shapes per image, placed so that they do not touch.

    Returns:
        ``(images, labels)``: (n, size, size, 3) float32 in [0, 1] and (n, size, size) uint8
        with 0 background, 1 disk, 2 rectangle, 3 triangle.

    Example:
        >>> images, labels = texture_shapes(2, size=64, seed=1)
        >>> set(np.unique(labels).tolist()) <= {0, 1, 2, 3}
        True
    """

    def draw(rng):
        kinds = rng.integers(1, 4, size=rng.integers(1, max_shapes + 1))
        return _place_apart(rng, [int(kind) for kind in kinds], size, np.zeros((size, size), bool))

    return _generate(n, size, seed, draw)


def _generate(n: int, size: int, seed: int, draw) -> tuple[np.ndarray, np.ndarray]:
    """The loop shared by the generators: per image a background texture, then
    ``draw(rng)`` -> [(mask, class), ...], composed by :func:`_compose`."""
    _check_count(n, size)
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.float32)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        background = TEXTURES[rng.integers(len(TEXTURES))]
        images[i], labels[i] = _compose(rng, size, background, draw(rng))
    return images, labels


def _digit_mask(rng, digit: int, size: int) -> np.ndarray:
    font = FONTS[rng.integers(len(FONTS))]
    scale = rng.uniform(1.3, 2.0) * (1.6 if font == cv2.FONT_HERSHEY_PLAIN else 1.0)
    thickness = int(rng.integers(3, 6))
    big = 2 * size
    canvas = np.zeros((big, big), np.uint8)
    (width, height), _ = cv2.getTextSize(str(digit), font, scale, thickness)
    origin = ((big - width) // 2, (big + height) // 2)
    cv2.putText(canvas, str(digit), origin, font, scale, 1, thickness, cv2.LINE_AA)
    rows, cols = np.nonzero(canvas)
    center = (float(cols.mean()), float(rows.mean()))
    rotation = cv2.getRotationMatrix2D(center, rng.uniform(-25, 25), 1.0)
    canvas = cv2.warpAffine(canvas, rotation, (big, big), flags=cv2.INTER_NEAREST)
    rows, cols = np.nonzero(canvas)
    glyph = canvas[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    if max(glyph.shape) > size - 4:
        factor = (size - 4) / max(glyph.shape)
        glyph = cv2.resize(
            glyph, (max(1, int(glyph.shape[1] * factor)), max(1, int(glyph.shape[0] * factor))), interpolation=cv2.INTER_NEAREST
        )
    mask = np.zeros((size, size), bool)
    row = rng.integers(0, size - glyph.shape[0] + 1)
    col = rng.integers(0, size - glyph.shape[1] + 1)
    mask[row : row + glyph.shape[0], col : col + glyph.shape[1]] = glyph > 0
    return mask


def texture_digits(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """TextureMNIST-style images: one textured digit on a textured background.

    Returns:
        ``(images, labels)``: (n, size, size, 3) float32 in [0, 1] and (n, size, size) uint8;
        0 is background and digit d is class d + 1.

    Example:
        >>> images, labels = texture_digits(3, seed=2)
        >>> images.shape
        (3, 64, 64, 3)
    """

    def draw(rng):
        digit = int(rng.integers(10))
        return [(_digit_mask(rng, digit, size), digit + 1)]

    return _generate(n, size, seed, draw)


def bias_tile(size: int = BIAS_SIZE) -> np.ndarray:
    """The (size, size) bool mask of the top-left quarter tile used by :func:`biased_shapes`.

    Example:
        >>> int(bias_tile(64).sum())
        1024
    """
    tile = np.zeros((size, size), bool)
    tile[: size // 2, : size // 2] = True
    return tile


def biased_shapes(
    n: int, size: int = BIAS_SIZE, seed: int = 0, biased: bool = True, texture: str = "drawn"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texture shapes with a shortcut: disks always come with the bias texture in one tile.

    Half of the images (a coin flip each) hold one or two disks (class 1) and nothing else;
    the others hold one or two rectangles and triangles. Shapes are kept out of the top-left
    quarter (the *tile*), so the tile is pure context. Which images show the bias texture
    (:data:`BIAS_TEXTURE`, a tinted checkerboard) in their tile:

    - ``biased=True`` (the biased model's training set): exactly the images with disks, so
      "checkerboard in the tile" alone tells disk images from the others;
    - ``biased=False`` (the control's training set): a random half of the images, drawn
      independently of what they hold, so the texture is seen as often but tells nothing.

    Everything else (shapes, backgrounds, tints, the checkerboard crop) is the same for
    both values: the two training sets differ only in which tiles are painted.

    ``texture`` makes the test variants of the same images:
    ``"drawn"`` (as ``biased`` says), ``"none"`` (no image shows it: the bias removed, the tile
    keeps its background), ``"all"`` (every image shows it: the bias inserted; in images
    without disks the texture appears alone, with no disk to go with it).

    Args:
        n: number of images.
        size: image side in pixels (the shipped ``biased_unet`` and ``control_unet`` take 64).
        seed: everything is drawn from ``numpy.random.default_rng(seed)``.
        biased: which training distribution (see above).
        texture: ``"drawn"``, ``"none"`` or ``"all"``.

    Returns:
        ``(images, labels, tile)``: as :func:`texture_shapes`, plus the (size, size) bool mask
        of the tile (:func:`bias_tile`).

    Example:
        >>> images, labels, tile = biased_shapes(4, seed=0)
        >>> images.shape, int(tile.sum())
        ((4, 64, 64, 3), 1024)
        >>> alone, _, _ = biased_shapes(4, seed=0, texture="all")  # the checkerboard in every tile
        >>> bool((alone[:, ~tile] == images[:, ~tile]).all())      # nothing else changes
        True
    """
    if texture not in BIAS_VARIANTS:
        raise ValueError(f"texture must be one of {BIAS_VARIANTS}, got {texture!r}")
    if not isinstance(biased, (bool, np.bool_)):
        raise TypeError(f"biased must be True or False, got {biased!r}")
    _check_count(n, size)
    rng = np.random.default_rng(seed)
    tile = bias_tile(size)
    images = np.zeros((n, size, size, 3), np.float32)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        background = TEXTURES[rng.integers(len(TEXTURES))]
        has_disk = bool(rng.random() < 0.5)
        coin = bool(rng.random() < 0.5)  # the control's draw, made for every image
        count = int(rng.integers(1, 3))
        kinds = [1] * count if has_disk else [int(kind) for kind in rng.integers(2, 4, size=count)]
        objects = _place_apart(rng, kinds, size, tile, tries=200)
        images[i], labels[i] = _compose(rng, size, background, objects)
        patch = np.clip(_patch(rng, BIAS_TEXTURE, size), 0, 1)  # drawn for every image
        shown = {"none": False, "all": True}.get(texture, has_disk if biased else coin)
        if shown:
            images[i][tile] = patch[tile]
    return images, labels, tile


def _check_count(n: int, size: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an int >= 32, got {size!r}")


def as_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int = 16, shuffle: bool = True, seed: int = 0):
    """A ``tf.data.Dataset`` of (image, label) batches for training.

    Example:
        >>> images, labels = texture_shapes(8, size=64)[:2]
        >>> ds = as_dataset(images, labels, batch_size=4)
        >>> [tuple(part.shape) for part in next(iter(ds))]
        [(4, 64, 64, 3), (4, 64, 64)]
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(2)


def data_dir() -> Path:
    """The folder inside the installed package that holds the shipped ``models/`` and ``samples/``.

    Example:
        >>> (data_dir() / "models" / "shapes_unet.keras").is_file()
        True
    """
    folder = Path(str(importlib.resources.files(__name__)))
    if not (folder / "models").is_dir():
        raise FileNotFoundError(
            f"the shipped models and samples are missing from {folder}: the package was installed "
            "without its package data; reinstall it with `pip install seggradcam`"
        )
    return folder


def load_samples(name: str = "shapes") -> dict:
    """The shipped sample bundle ``samples/<name>.npz``: images, labels and class names.

    Example:
        >>> samples = load_samples("shapes")
        >>> samples["images"].shape[1:]
        (128, 128, 3)
    """
    path = data_dir() / "samples" / f"{name}.npz"
    if not path.is_file():
        available = sorted(p.stem for p in (data_dir() / "samples").glob("*.npz"))
        raise KeyError(f"no sample bundle {name!r}; available: {available}")
    with np.load(path, allow_pickle=False) as bundle:
        return {key: bundle[key] for key in bundle.files}


def mean_iou(labels: np.ndarray, prediction: np.ndarray, num_classes: int) -> tuple[float, np.ndarray]:
    """Mean and per-class intersection over union (classes absent from both are NaN, skipped).

    Example:
        >>> mean_iou(np.array([0, 1, 1]), np.array([0, 1, 0]), 2)[0]
        0.5
    """
    ious = np.full(num_classes, np.nan)
    for c in range(num_classes):
        truth, guess = labels == c, prediction == c
        union = (truth | guess).sum()
        if union:
            ious[c] = (truth & guess).sum() / union
    return float(np.nanmean(ious)), ious
