"""Where the audited images come from: a folder, a NumPy array, or a ``tf.data.Dataset``.

Every source numbers its images 0..N-1 in a fixed order (a folder: sorted by relative
path) and names each one (the ``image`` column of the metrics): the path relative to the
folder for files, the index otherwise. A source hands out :class:`Batch` es of the indices
it has not done yet, so a resumed audit reads only what is missing (a ``tf.data`` source cannot
seek: it is iterated from the start and the images already done are skipped unexplained).

Ground-truth masks are label maps (H, W) of class indices at the images' size: for a folder,
files in a mask folder with the same relative path and stem as the image (``a/b.png`` ->
``MASKS/a/b.png``; ``b_mask.png`` is accepted too, and any image suffix); for an array, an
(N, H, W) integer array; for a dataset, the second item of (image, mask) pairs.

Example:
    >>> source = open_source(np.zeros((5, 8, 8, 3), np.float32))
    >>> source.count, source.image_shape, source.key_type
    (5, (8, 8, 3), 'int')
    >>> [batch.keys for batch in source.batches(done={2, 3}, batch_size=2)]
    [(0, 1), (4,)]
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Container, Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "Batch",
    "IMAGE_SUFFIXES",
    "ArraySource",
    "DatasetSource",
    "FolderSource",
    "Source",
    "decode_image",
    "decode_mask",
    "open_source",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MASK_MARK = "_mask"  # a file whose stem ends like this is a mask, never an image to audit


@dataclasses.dataclass(frozen=True)
class Batch:
    """Images read together.

    Attributes:
        indices: (n,) int64 positions of the images in the source.
        keys: the images' names (relative paths, or the indices themselves).
        images: (n, H, W, C) float32.
        truth: (n, H, W) int32 ground-truth labels, or None without masks.
    """

    indices: np.ndarray
    keys: tuple
    images: np.ndarray
    truth: np.ndarray | None = None


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode PNG/JPEG/TIFF bytes to float32 (H, W, C) in [0, 1] (RGB, or one channel for gray).

    8-bit files are divided by 255 and 16-bit files by 65535; an alpha channel is dropped.

    Example:
        >>> import cv2
        >>> png = cv2.imencode(".png", np.full((2, 3), 255, np.uint8))[1].tobytes()
        >>> decode_image(png, "white.png").shape
        (2, 3, 1)
    """
    import cv2

    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if picture is None:
        raise ValueError(f"could not read image {name} (not a PNG/JPEG/TIFF image, or corrupt)")
    if picture.ndim == 2:
        picture = picture[..., np.newaxis]
    elif picture.shape[-1] >= 3:
        picture = cv2.cvtColor(np.ascontiguousarray(picture[..., :3]), cv2.COLOR_BGR2RGB)
    scale = 65535.0 if picture.dtype == np.uint16 else 255.0
    return picture.astype(np.float32) / scale


def decode_mask(data: bytes, name: str) -> np.ndarray:
    """Decode a label image (PNG/TIFF of class indices) to int32 (H, W); color masks use channel 0.

    Example:
        >>> import cv2
        >>> png = cv2.imencode(".png", np.array([[0, 2]], np.uint8))[1].tobytes()
        >>> decode_mask(png, "m.png").tolist()
        [[0, 2]]
    """
    import cv2

    labels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise ValueError(f"could not read mask {name} (not a PNG/TIFF label image, or corrupt)")
    if labels.ndim == 3:
        labels = labels[..., 0]
    return labels.astype(np.int32)


class Source:
    """What every source offers (see the module docstring).

    Attributes:
        kind: ``"folder"``, ``"array"`` or ``"tf.data"``.
        count: number of images, or None when a dataset does not know it.
        image_shape: (H, W, C) of the images.
        key_type: ``"string"`` (relative paths) or ``"int"`` (indices).
        has_masks: whether ground-truth masks come with the images.
    """

    kind: str = ""
    count: int | None = None
    image_shape: tuple = ()
    key_type: str = "int"
    has_masks: bool = False

    def batches(self, done: Container[int], batch_size: int) -> Iterator[Batch]:  # pragma: no cover - abstract
        """Batches of at most ``batch_size`` images, in index order, skipping the indices in ``done``."""
        raise NotImplementedError

    def todo(self, done: Container[int]) -> list[int]:
        """The indices not in ``done`` (sources of known length)."""
        return [index for index in range(self.count) if index not in done]

    def fingerprint(self) -> dict:  # pragma: no cover - abstract
        """A JSON-able description that changes when the source's images change."""
        raise NotImplementedError

    def describe(self) -> str:
        """A few words for the report."""
        count = "an unknown number of" if self.count is None else str(self.count)
        return f"{count} images ({self.kind})"


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]


class FolderSource(Source):
    """Image files under a folder (recursively), sorted by their path relative to it.

    Files whose stem ends in ``_mask``, hidden files and folders, and anything inside the
    mask folder are skipped.

    Args:
        folder: the image folder.
        masks: a folder of label images with the same relative paths and stems, or None.
    """

    kind = "folder"
    key_type = "string"

    def __init__(self, folder, masks=None):
        self.root = Path(folder)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        mask_root = None if masks is None else Path(masks)
        if mask_root is not None and not mask_root.is_dir():
            raise FileNotFoundError(f"mask folder not found: {mask_root}")
        skip = mask_root.resolve() if mask_root is not None else None
        self.paths = sorted(_image_files(self.root, skip), key=lambda p: p.relative_to(self.root).as_posix())
        if not self.paths:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {self.root}")
        self.keys = [p.relative_to(self.root).as_posix() for p in self.paths]
        self.count = len(self.paths)
        self.mask_paths = None if mask_root is None else _match_masks(self.root, self.paths, mask_root)
        self.has_masks = self.mask_paths is not None
        first, _ = self.load(0)
        self.image_shape = first.shape

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The image (H, W, C) float32 and its labels (or None) at ``index``."""
        image = decode_image(self.paths[index].read_bytes(), str(self.paths[index]))
        if self.mask_paths is None:
            return image, None
        mask_path = self.mask_paths[index]
        return image, decode_mask(mask_path.read_bytes(), str(mask_path))

    def batches(self, done, batch_size):
        for chunk in _chunks(self.todo(done), batch_size):
            loaded = [self.load(i) for i in chunk]
            yield _make_batch(chunk, tuple(self.keys[i] for i in chunk), loaded)

    def fingerprint(self):
        names = hashlib.sha256("\n".join(self.keys).encode()).hexdigest()
        return {"kind": self.kind, "count": self.count, "names_sha256": names, "masks": self.has_masks}


def _image_files(root: Path, skip: Path | None) -> Iterator[Path]:
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        subfolders[:] = [name for name in subfolders if not name.startswith(".") and (skip is None or (here / name).resolve() != skip)]
        for name in files:
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES or path.stem.endswith(MASK_MARK):
                continue
            yield path


def _match_masks(root: Path, paths: list[Path], mask_root: Path) -> list[Path]:
    found = {}
    for path in _all_files(mask_root):
        relative = path.relative_to(mask_root)
        stem = relative.with_suffix("").as_posix()
        if stem.endswith(MASK_MARK):
            stem = stem[: -len(MASK_MARK)]
        found.setdefault(stem, path)
    matched, missing = [], []
    for path in paths:
        stem = path.relative_to(root).with_suffix("").as_posix()
        if stem in found:
            matched.append(found[stem])
        else:
            missing.append(path.relative_to(root).as_posix())
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ValueError(
            f"no mask in {mask_root} for {len(missing)} image(s): {', '.join(missing[:3])}{more} "
            f"(a mask has the image's relative path and stem, e.g. {Path(missing[0]).with_suffix('.png').as_posix()} "
            f"or {Path(missing[0]).stem}{MASK_MARK}.png)"
        )
    return matched


def _all_files(root: Path) -> Iterator[Path]:
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                yield Path(folder) / name


def _make_batch(indices: list[int], keys: tuple, loaded: list) -> Batch:
    images = [image for image, _ in loaded]
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(f"images {keys} have different sizes {sorted(shapes)}; an audit needs one image size")
    truth = None
    if loaded and loaded[0][1] is not None:
        truth = np.stack([labels for _, labels in loaded])
    return Batch(np.asarray(indices, np.int64), keys, np.stack(images).astype(np.float32, copy=False), truth)


class ArraySource(Source):
    """Images in a NumPy array (N, H, W, C) or (N, H, W); a ``.npy`` file is memory-mapped.

    Args:
        images: the array, or a path to a ``.npy`` file.
        masks: (N, H, W) integer labels (array or ``.npy`` path), or None.
    """

    kind = "array"
    key_type = "int"

    def __init__(self, images, masks=None):
        self.images = _as_array(images, "images")
        if self.images.ndim == 3:
            self.images = self.images[..., np.newaxis]
        if self.images.ndim != 4 or len(self.images) == 0:
            raise ValueError(f"an image array must be (N, H, W, C) or (N, H, W) with N >= 1, got shape {self.images.shape}")
        if not np.issubdtype(self.images.dtype, np.number):
            raise TypeError(f"an image array must be numeric, got dtype {self.images.dtype}")
        self.masks = None if masks is None else _as_array(masks, "masks")
        if self.masks is not None:
            if self.masks.ndim == 4 and self.masks.shape[-1] == 1:
                self.masks = self.masks[..., 0]
            if self.masks.shape != self.images.shape[:3]:
                raise ValueError(f"masks must be (N, H, W) = {self.images.shape[:3]} to match the images, got {self.masks.shape}")
        self.count = len(self.images)
        self.image_shape = tuple(int(s) for s in self.images.shape[1:])
        self.has_masks = self.masks is not None

    def batches(self, done, batch_size):
        for chunk in _chunks(self.todo(done), batch_size):
            truth = None if self.masks is None else np.asarray(self.masks[chunk], np.int32)
            images = np.asarray(self.images[chunk], np.float32)
            yield Batch(np.asarray(chunk, np.int64), tuple(chunk), images, truth)

    def fingerprint(self):
        digest = hashlib.sha256()
        for array in (self.images, self.masks):
            if array is None:
                continue
            digest.update(f"{array.shape}{array.dtype}".encode())
            for start in range(0, len(array), 64):  # in slices, so a memory-mapped file is not loaded whole
                digest.update(np.ascontiguousarray(array[start : start + 64]).tobytes())
        return {
            "kind": self.kind,
            "count": self.count,
            "shape": list(self.images.shape),
            "sha256": digest.hexdigest(),
            "masks": self.has_masks,
        }


def _as_array(value, what: str) -> np.ndarray:
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"{what} file not found: {path}")
        if path.suffix.lower() != ".npy":
            raise ValueError(f"{what} file must be a .npy array, got {path}")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return np.asarray(value)


class DatasetSource(Source):
    """A ``tf.data.Dataset`` of images, (image, mask) pairs or dicts with ``"image"``/``"mask"``.

    A batched dataset (images of rank 4) is unbatched. Its length is taken from
    ``dataset.cardinality()`` when known; otherwise the audit's arrays grow as it goes.
    """

    kind = "tf.data"
    key_type = "int"

    def __init__(self, dataset):
        import tensorflow as tf

        spec = dataset.element_spec
        image_spec = _image_spec(spec)
        if image_spec.shape.rank == 4:
            dataset = dataset.unbatch()
            spec = dataset.element_spec
            image_spec = _image_spec(spec)
        if image_spec.shape.rank not in (2, 3):
            raise ValueError(f"dataset images must be (H, W, C) or (H, W) elements, got element spec {spec}")
        self.dataset = dataset
        self.has_masks = _mask_spec(spec) is not None
        cardinality = int(dataset.cardinality())
        if cardinality == tf.data.INFINITE_CARDINALITY:
            raise ValueError("the dataset is infinite (a .repeat() without a count?); an audit needs a finite dataset")
        self.count = cardinality if cardinality >= 0 else None
        first = next(iter(self._elements()), None)
        if first is None:
            raise ValueError("the dataset is empty")
        self.image_shape = first[1].shape
        self._spec = str(spec)

    def _elements(self) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        for index, element in enumerate(self.dataset.as_numpy_iterator()):
            image, mask = split_element(element)
            yield index, image, mask

    def batches(self, done, batch_size):
        pending = []
        for index, image, mask in self._elements():
            if index in done:
                continue
            pending.append((index, image, mask))
            if len(pending) == batch_size:
                yield _dataset_batch(pending)
                pending = []
        if pending:
            yield _dataset_batch(pending)

    def fingerprint(self):
        return {"kind": self.kind, "count": self.count, "element_spec": self._spec, "masks": self.has_masks}


def split_element(element) -> tuple[np.ndarray, np.ndarray | None]:
    """(image (H, W, C) float32, labels (H, W) int32 or None) from one dataset element.

    Example:
        >>> image, mask = split_element((np.zeros((2, 2, 3)), np.ones((2, 2))))
        >>> image.shape, mask.dtype
        ((2, 2, 3), dtype('int32'))
    """
    if isinstance(element, dict):
        image, mask = element["image"], element.get("mask")
    elif isinstance(element, (tuple, list)):
        image, mask = element[0], element[1] if len(element) > 1 else None
    else:
        image, mask = element, None
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        mask = mask.astype(np.int32)
    return image, mask


def _image_spec(spec):
    if isinstance(spec, dict):
        if "image" not in spec:
            raise ValueError(f"a dataset of dicts needs an 'image' key, got keys {sorted(spec)}")
        return spec["image"]
    if isinstance(spec, (tuple, list)):
        return spec[0]
    return spec


def _mask_spec(spec):
    if isinstance(spec, dict):
        return spec.get("mask")
    if isinstance(spec, (tuple, list)) and len(spec) > 1:
        return spec[1]
    return None


def _dataset_batch(pending: list) -> Batch:
    indices = [index for index, _, _ in pending]
    loaded = [(image, mask) for _, image, mask in pending]
    return _make_batch(indices, tuple(indices), loaded)


def open_source(source, masks=None) -> Source:
    """The :class:`Source` for a folder, a ``.npy`` file, an array or a ``tf.data.Dataset``.

    Args:
        source: a folder path, a ``.npy`` path, an (N, H, W, C) array, or a dataset.
        masks: ground-truth labels: a folder (for a folder source), an (N, H, W) array or
            ``.npy`` path (for an array source); a dataset brings its own (image, mask) pairs.

    Raises:
        FileNotFoundError: a path that does not exist.
        TypeError: a source of another kind, or masks that do not fit the source.
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            if masks is not None and not isinstance(masks, (str, os.PathLike)):
                raise TypeError(f"masks for an image folder must be a folder path, got {type(masks).__name__}")
            return FolderSource(path, masks)
        if path.suffix.lower() == ".npy":
            return ArraySource(path, masks)
        if not path.exists():
            raise FileNotFoundError(f"source not found: {path} (expected a folder of images or a .npy array)")
        raise ValueError(f"source {path} is neither a folder of images nor a .npy array")
    if _is_tf_dataset(source):
        if masks is not None:
            raise TypeError("a tf.data source brings its own masks as (image, mask) pairs; do not pass masks=")
        return DatasetSource(source)
    if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        return ArraySource(source, masks)
    raise TypeError(f"source must be a folder path, a .npy path, a NumPy array or a tf.data.Dataset, got {type(source).__name__}")


def _is_tf_dataset(value) -> bool:
    import sys

    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(value, tf.data.Dataset)
