"""seggradcam.audit with the local backend: values, resumability, sources, targets, the command."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

import seggradcam as sgc
from seggradcam.audit import LocalBackend, MissingExtraError, audit
from seggradcam.audit.selection import make_plan
from seggradcam.audit.sources import open_source
from seggradcam.data import SHAPE_CLASSES, texture_shapes
from seggradcam.metrics import energy_inside, map_iou, pointing_game
from seggradcam.models import build_unet, load_model, load_pretrained

from .helpers import SMALL, assert_same_table

pq = pytest.importorskip("pyarrow.parquet")
zarr = pytest.importorskip("zarr")

SHAPES_LAYERS = ["bottleneck_conv2", "dec1_conv2"]
# The audit and the test run the same compiled pass on the same image in one process, so the
# values agree to float32 rounding of identical operations; 1e-6 leaves room for thread scheduling.
SAME_PASS = 1e-6
# heatmaps.zarr stores float16: values in [0, 1] are rounded to 11 significant bits (<= 2**-11).
FLOAT16 = 2**-11


@pytest.fixture(scope="module")
def shapes():
    model = load_pretrained("shapes_unet")
    images, labels = texture_shapes(24, 128, seed=21)
    return model, images, labels


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory):
    keras.utils.set_random_seed(3)
    path = tmp_path_factory.mktemp("model") / "small.keras"
    build_unet(**SMALL, name="small").save(path)
    return path


@pytest.fixture(scope="module")
def small_data():
    rng = np.random.default_rng(5)
    images = rng.uniform(0, 1, (14, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (14, 32, 32)).astype(np.int32)
    return images, labels


@pytest.fixture(scope="module")
def shapes_audit(shapes, tmp_path_factory):
    model, images, labels = shapes
    out = tmp_path_factory.mktemp("audit")
    result = audit(model, images, out=out, masks=labels, layers=SHAPES_LAYERS, batch_size=5, class_names=SHAPE_CLASSES, progress=False)
    return result


def test_audit_of_24_images_matches_explain_and_metrics(shapes, shapes_audit):
    model, images, labels = shapes
    table = shapes_audit.metrics().to_pandas()
    expected_columns = {"image", "image_index", "target", "target_index", "class_index", "layer", "layer_index", "score"}
    expected_columns |= {"negative_share", "empty", "max_heat", "energy_inside", "pointing_hit", "iou_at_0.5"}
    assert expected_columns <= set(table.columns)
    explainer = sgc.SegGradCAM(model, layers=SHAPES_LAYERS)
    heatmaps = shapes_audit.heatmaps()
    assert heatmaps.shape == (24, 4, 2, 128, 128)
    expected_rows = 0
    for n in range(24):
        classes = [int(c) for c in np.unique(explainer.predict(images[n]))]
        expected_rows += len(classes) * 2
        expl = explainer.explain(images[n], classes)
        truth = np.stack([labels[n] == c for c in classes])[np.newaxis]
        rows = table[table.image_index == n]
        assert sorted(set(rows.class_index)) == classes
        for t, c in enumerate(classes):
            for l, layer in enumerate(SHAPES_LAYERS):
                row = rows[(rows.class_index == c) & (rows.layer == layer)]
                assert len(row) == 1
                row = row.iloc[0]
                assert row.image == n and row.target == SHAPE_CLASSES[c] and row.target_index == c and row.layer_index == l
                np.testing.assert_allclose(row.score, expl.scores[0, t], rtol=SAME_PASS)
                assert row.negative_share == pytest.approx(float((expl.weights[layer][0, t] < 0).mean()), abs=SAME_PASS)
                raw = expl.raw[layer][0, t]
                assert row.max_heat == pytest.approx(float(np.maximum(raw, 0).max()), rel=SAME_PASS)
                assert bool(row.empty) == bool(np.maximum(raw, 0).max() <= 0)
                for column, function in (("energy_inside", energy_inside), ("pointing_hit", pointing_game), ("iou_at_0.5", map_iou)):
                    value = function(expl.heatmaps, truth)[0, t, l]
                    assert row[column] == pytest.approx(value, abs=SAME_PASS, nan_ok=True), (n, c, layer, column)
                assert row.truth_pixels == (labels[n] == c).sum()
            stored = np.asarray(heatmaps[n, c], np.float32)
            np.testing.assert_allclose(stored, expl.heatmaps[0, t], atol=FLOAT16)
        absent = [c for c in range(4) if c not in classes]
        assert all(np.isnan(np.asarray(heatmaps[n, c], np.float32)).all() for c in absent)
    assert len(table) == expected_rows == shapes_audit.rows
    keys = table[["image_index", "target_index", "layer_index"]].to_numpy()
    assert (np.diff(keys[:, 0] * 100 + keys[:, 1] * 10 + keys[:, 2]) > 0).all(), "sorted, one row per image x target x layer"
    # the trained model localises: heat is mostly inside the true objects at the bottleneck
    bottleneck = table[(table.layer == "bottleneck_conv2") & (table.class_index > 0)]
    assert bottleneck.energy_inside.mean() > 0.5


def test_report_is_one_self_contained_page(shapes_audit):
    page = shapes_audit.report_path.read_text()
    assert page.count("data:image/png;base64,") >= 20  # plots and the worst/best galleries
    assert "src='http" not in page and 'src="http' not in page and "<link" not in page and "<script" not in page
    for name in SHAPE_CLASSES[1:]:
        assert f"<h3>{name} <small>" in page
    assert "Heat inside the object" in page and "Empty maps" in page


def test_zarr_store_is_chunked_per_image_with_names(shapes_audit):
    group = zarr.open_group(str(shapes_audit.heatmaps_path), mode="r")
    heatmaps = group["heatmaps"]
    assert heatmaps.chunks == (1, 4, 2, 128, 128) and heatmaps.dtype == np.float16
    assert group.attrs["layers"] == SHAPES_LAYERS
    assert group.attrs["targets"] == list(SHAPE_CLASSES)
    assert heatmaps.compressors  # compressed
    assert group["thumbnails"].shape[0] == 24


class InterruptAfter(LocalBackend):
    """The local backend, interrupted (as by Ctrl-C) after some commits."""

    def __init__(self, batches):
        self.batches = batches

    def run(self, job, store, progress):
        commit, done = store.commit, []

        def counting(result):
            if len(done) == self.batches:
                raise KeyboardInterrupt
            done.append(len(result))
            return commit(result)

        store.commit = counting
        return super().run(job, store, progress)


def _table(out):
    return pq.read_table(Path(out) / "metrics.parquet")


def test_interrupted_audit_resumes_to_the_uninterrupted_result(small_model_file, small_data, tmp_path):
    images, labels = small_data
    options = dict(masks=labels, layers="all", batch_size=3, progress=False)
    reference = audit(small_model_file, images, out=tmp_path / "whole", **options)
    with pytest.raises(KeyboardInterrupt):
        audit(small_model_file, images, out=tmp_path / "cut", backend=InterruptAfter(2), **options)
    parts = sorted((tmp_path / "cut" / ".seggradcam-audit" / "parts").glob("part-*.parquet"))
    assert len(parts) == 2 and not (tmp_path / "cut" / "metrics.parquet").exists()
    # the leftover of a crash in the middle of a commit: a temporary part file
    (parts[0].parent / ".tmp-crashed.parquet").write_bytes(b"half a file")
    resumed = audit(small_model_file, images, out=tmp_path / "cut", **options)
    assert resumed.explained == 14 - 6 and resumed.images == 14
    assert not list(parts[0].parent.glob(".tmp-*"))
    assert_same_table(_table(tmp_path / "cut"), _table(tmp_path / "whole"))
    assert reference.rows == resumed.rows
    np.testing.assert_array_equal(np.asarray(resumed.heatmaps()[:]), np.asarray(reference.heatmaps()[:]))
    again = audit(small_model_file, images, out=tmp_path / "cut", **options)
    assert again.explained == 0
    assert_same_table(_table(tmp_path / "cut"), _table(tmp_path / "whole"))


KILLED_RUN = """
import sys, numpy as np
from seggradcam.audit import audit
data = np.load(sys.argv[2])
audit(sys.argv[1], data["images"], out=sys.argv[3], masks=data["labels"], layers="all", batch_size=1, progress=False)
"""


def test_killed_process_resumes_without_loss_or_duplicates(small_model_file, small_data, tmp_path):
    images, labels = small_data
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1])] + sys.path))
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(small_model_file), str(tmp_path / "data.npz"), str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parts = out / ".seggradcam-audit" / "parts"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(parts.glob("part-*.parquet"))) < 3 and process.poll() is None:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    committed = len(list(parts.glob("part-*.parquet")))
    assert 3 <= committed < 14, "the process was killed in the middle of the audit"
    options = dict(masks=labels, layers="all", batch_size=4, progress=False)
    resumed = audit(small_model_file, images, out=out, **options)
    assert resumed.explained == 14 - committed
    audit(small_model_file, images, out=tmp_path / "whole", **options)
    assert_same_table(_table(out), _table(tmp_path / "whole"))


def test_other_settings_in_the_same_folder_are_refused(small_model_file, small_data, tmp_path):
    images, _ = small_data
    audit(small_model_file, images[:2], out=tmp_path, report=False, progress=False)
    with pytest.raises(ValueError, match="holds an audit with other settings.*targets"):
        audit(small_model_file, images[:2], out=tmp_path, targets=[1], report=False, progress=False)
    with pytest.raises(ValueError, match="other settings.*source"):
        audit(small_model_file, images[:3], out=tmp_path, report=False, progress=False)


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def test_folder_source_sorted_by_path_with_masks_by_stem(small_model_file, small_data, tmp_path):
    images, labels = small_data
    pixels = np.round(images[:4] * 255).astype(np.uint8)
    names = ["b/x.png", "a.png", "b/a.png", "c.png"]
    for name, picture, label in zip(names, pixels, labels):
        _write_png(tmp_path / "images" / name, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        stem = name[:-4] + ("_mask" if name == "c.png" else "")
        _write_png(tmp_path / "masks" / f"{stem}.png", label.astype(np.uint8))
    _write_png(tmp_path / "images" / "a_mask.png", labels[0].astype(np.uint8))  # not an image to audit
    source = open_source(tmp_path / "images", tmp_path / "masks")
    assert source.keys == ["a.png", "b/a.png", "b/x.png", "c.png"]
    order = [names.index(key) for key in source.keys]
    result = audit(small_model_file, tmp_path / "images", masks=tmp_path / "masks", out=tmp_path / "out", progress=False, report=False)
    table = result.metrics().to_pandas()
    assert list(dict.fromkeys(table.image)) == source.keys
    reference = audit(
        small_model_file, pixels[order] / np.float32(255), masks=labels[order], out=tmp_path / "ref", progress=False, report=False
    )
    expected = reference.metrics().to_pandas()
    numeric = ["score", "negative_share", "max_heat", "energy_inside", "truth_pixels"]
    np.testing.assert_allclose(table[numeric].to_numpy(float), expected[numeric].to_numpy(float), atol=SAME_PASS)
    (tmp_path / "masks" / "c_mask.png").unlink()
    with pytest.raises(ValueError, match=r"no mask in .* for 1 image\(s\): c.png"):
        open_source(tmp_path / "images", tmp_path / "masks")


def test_gray_and_16_bit_files_are_scaled_to_unit_range(tmp_path):
    _write_png(tmp_path / "gray.png", np.full((4, 5), 51, np.uint8))
    _write_png(tmp_path / "deep.tif", np.full((4, 5, 3), 65535, np.uint16))
    source = open_source(tmp_path)
    batch = next(source.batches(set(), 1))
    assert batch.keys == ("deep.tif",) and np.allclose(batch.images, 1.0)
    batch = next(source.batches({0}, 1))
    assert batch.images.shape == (1, 4, 5, 1) and np.allclose(batch.images, 0.2)


def test_tf_dataset_of_pairs_gives_the_array_table(small_model_file, small_data, tmp_path):
    import tensorflow as tf

    images, labels = small_data
    options = dict(layers="all", progress=False, report=False)
    expected = audit(small_model_file, images[:5], masks=labels[:5], out=tmp_path / "array", **options).metrics()
    batched = tf.data.Dataset.from_tensor_slices((images[:5], labels[:5])).batch(2)
    got = audit(small_model_file, batched, out=tmp_path / "dataset", **options)
    assert_same_table(got.metrics(), expected)
    unknown = tf.data.Dataset.from_tensor_slices(images[:5]).filter(lambda image: True)  # length unknown
    grown = audit(small_model_file, unknown, out=tmp_path / "unknown", **options)
    assert grown.images == 5 and grown.heatmaps().shape[0] == 5


def test_explicit_targets_apply_where_they_select_pixels(small_model_file, small_data, tmp_path):
    from skimage.measure import label

    images, _ = small_data
    model = load_model(small_model_file)
    predictions = sgc.SegGradCAM(model).predict(images)
    targets = [1, sgc.ClassTarget(2, region="all"), sgc.PixelTarget(3, 4), sgc.ComponentTarget(0, which=1)]
    result = audit(model, images, targets=targets, out=tmp_path, progress=False, report=False)
    table = result.metrics().to_pandas()
    for n, prediction in enumerate(predictions):
        expected = {1, 2}  # a whole-image class target and a pixel apply everywhere
        if (prediction == 1).any():
            expected.add(0)
        if label(prediction == 0, connectivity=2).max() >= 2:
            expected.add(3)
        assert set(table[table.image_index == n].target_index) == expected, n
    assert list(result.targets) == ["class 1", "class 2 (all)", "pixel (3, 4)", "class 0 object 1"]


def test_make_plan_checks_targets():
    assert make_plan([1, 1], 3).names == ("class 1", "class 1 #2")
    with pytest.raises(ValueError, match="class index 5 is out of range"):
        make_plan([5], 3)
    with pytest.raises(TypeError, match="each target must be an int class index or a Target"):
        make_plan(["car"], 3)
    with pytest.raises(ValueError, match="class_names has 2 name"):
        make_plan(None, 3, class_names=["a", "b"])
    binary = make_plan(None, 1)
    assert [slot for slot, _ in binary.per_image(np.array([[0, 1]]))] == [0]
    assert binary.per_image(np.zeros((2, 2), int)) == []


def test_bad_arguments_raise_clear_errors(small_model_file, small_data, tmp_path):
    images, _ = small_data
    with pytest.raises(TypeError, match="needs out="):
        audit(small_model_file, images)
    with pytest.raises(ValueError, match="backend must be 'local' or 'ray'"):
        audit(small_model_file, images, out=tmp_path, backend="spark")
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        audit(small_model_file, images, out=tmp_path, batch_size=0)
    with pytest.raises(FileNotFoundError, match="source not found"):
        audit(small_model_file, tmp_path / "missing", out=tmp_path / "o")
    with pytest.raises(ValueError, match=r"masks must be \(N, H, W\)"):
        audit(small_model_file, images, masks=np.zeros((3, 32, 32), int), out=tmp_path / "o")


def test_missing_extras_name_the_pip_command(small_model_file, small_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(MissingExtraError, match=r'pip install "seggradcam\[audit\]"'):
        audit(small_model_file, small_data[0], out=tmp_path)


def test_package_imports_without_the_extras():
    code = (
        "import sys\n"
        "for name in ('pyarrow', 'zarr', 'ray'):\n"
        "    sys.modules[name] = None\n"
        "import seggradcam, seggradcam.audit, seggradcam.audit.cli, seggradcam.audit.report, seggradcam.audit.ray_backend\n"
        "from seggradcam.audit.ray_backend import RayBackend\n"
        "try:\n"
        "    RayBackend().run(None, None, None)\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1])] + sys.path))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'pip install "seggradcam[ray]"' in result.stdout


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1])] + sys.path))
    return subprocess.run(
        [sys.executable, "-m", "seggradcam.cli", "audit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_command_writes_the_three_outputs(small_model_file, small_data, tmp_path):
    images, labels = small_data
    for n in range(3):
        _write_png(tmp_path / "images" / f"{n}.png", np.round(images[n] * 255).astype(np.uint8))
        _write_png(tmp_path / "masks" / f"{n}.png", labels[n].astype(np.uint8))
    result = _cli(
        str(small_model_file), "images", "--masks", "masks", "--out", "out", "--class", "1", "2", "--batch-size", "2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "audited 3 images" in result.stdout
    for name in ("metrics.parquet", "heatmaps.zarr", "report.html"):
        assert (tmp_path / "out" / name).exists()
    settings = json.loads((tmp_path / "out" / ".seggradcam-audit" / "settings.json").read_text())
    assert settings["targets"] == ["class 1", "class 2"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["nowhere", "--out", "o"], "source not found: nowhere"),
        (["images", "--out", "o", "--workers", "2"], "--ray-address and --workers need --backend ray"),
        (["images", "--out", "o", "--layers", "nope"], "nope"),
    ],
)
def test_command_bad_arguments_exit_2_with_one_line(small_model_file, small_data, tmp_path, extra, message):
    _write_png(tmp_path / "images" / "0.png", np.round(small_data[0][0] * 255).astype(np.uint8))
    result = _cli(str(small_model_file), *extra, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("seggradcam audit: error")]) == 1
