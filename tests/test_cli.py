"""The seggradcam command. A few runs as a subprocess (what a user sees: start-up lines, exit
codes); most call ``cli.main`` in this process, which keeps TensorFlow started once."""

import os
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

import seggradcam as sgc
from seggradcam import cli
from seggradcam.data import data_dir
from seggradcam.models import build_unet

SHAPES_MODEL = str(data_dir() / "models" / "shapes_unet.keras")


def sample(i=0):
    return str(data_dir() / "samples" / f"shapes_{i}.png")


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "seggradcam.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def main(monkeypatch, capsys):
    """cli.main in this process; returns (exit code, stdout, stderr). The CLI sets
    TF_CPP_MIN_LOG_LEVEL for its process: monkeypatch puts the variable back afterwards."""
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)

    def call(*args):
        code = cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def assert_one_line_error(err, *words):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("seggradcam ") and ": error: " in lines[0], err
    for word in words:
        assert word in lines[0], (word, err)


def saved_model(tmp_path, name, **options):
    keras.utils.set_random_seed(3)
    model = build_unet(**{"input_shape": (32, 32, 3), "num_classes": 3, "filters": (4, 8, 16), **options})
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return model, path


# --------------------------------------------------------------------------- subprocess


def test_help_and_import_do_not_start_tensorflow(tmp_path):
    code = (
        "import sys\n"
        "import seggradcam\n"
        "from seggradcam import cli\n"
        "for argv in (['--help'], ['explain', '--help'], ['demo', '--help']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, stop.code\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'matplotlib', 'cv2') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert "usage: seggradcam explain" in result.stdout and "--class C" in result.stdout


def test_demo_writes_a_grid_prints_the_table_and_no_tensorflow_log_lines(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "seggradcam.cli", "demo", "--out", str(tmp_path / "demo")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no TensorFlow start-up lines, no warnings
    grid = tmp_path / "demo" / "demo_grid.png"
    assert grid.is_file() and grid.stat().st_size > 10_000
    assert "bottleneck_conv2" in result.stdout and "in mask" in result.stdout
    picture = cv2.imread(str(grid))
    assert picture is not None and picture.shape[0] > 200 and picture.std() > 10


def test_missing_tensorflow_is_one_line_naming_the_pip_command(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None  # as if TensorFlow were not installed\n"
        "import seggradcam\n"
        "try:\n"
        "    seggradcam.SegGradCAM\n"
        "except ImportError as error:\n"
        "    print('IMPORT', error)\n"
        "from seggradcam import cli\n"
        f"sys.exit(cli.main(['layers', {SHAPES_MODEL!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "IMPORT seggradcam needs TensorFlow" in result.stdout and 'pip install "seggradcam[cpu]"' in result.stdout
    assert result.returncode == 2
    assert_one_line_error(result.stderr, 'pip install "seggradcam[cpu]"')


# --------------------------------------------------------------------------- in this process


def test_layers_marks_auto_and_decoder(main):
    code, out, err = main("layers", SHAPES_MODEL)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("bottleneck_conv2"))
    assert "auto" in line
    assert "decoder" in next(line for line in out.splitlines() if line.startswith("dec1_up"))


def test_lazy_package_exports_the_same_public_names():
    assert sgc.__all__ == [
        "ClassTarget",
        "ComponentTarget",
        "Diagnosis",
        "EmptyMapWarning",
        "Explanation",
        "PixelTarget",
        "ProbabilityWarning",
        "RegionTarget",
        "SegGradCAM",
        "SegGradCAMWarning",
        "Target",
        "audit",
        "load_explanation",
        "save_explanation",
        "seg_grad_cam",
    ]
    from seggradcam import SegGradCAM
    from seggradcam.explainer import SegGradCAM as defined

    assert SegGradCAM is defined
    assert set(sgc.__all__) <= set(dir(sgc))
    for name in sgc.__all__:
        assert getattr(sgc, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = sgc.nope


@pytest.mark.parametrize(
    "extra, words",
    [
        (["missing.png"], ["image file not found: missing.png"]),
        (["SAMPLE", "--layers", "nope"], ["no layer named 'nope'"]),
        (["SAMPLE", "--class", "9"], ["class index 9 is out of range", "0..3"]),
        (["SAMPLE", "--pixel", "1"], ["--pixel must be 2 comma-separated integers"]),
        (["SAMPLE", "--component", "1:biggest"], ["--component must be C[:largest|smallest|N]"]),
        (["SAMPLE", "--component", "1", "--class", "1"], ["--component names its own class"]),
    ],
)
def test_explain_bad_arguments_exit_2_with_one_line(main, tmp_path, extra, words):
    extra = [sample() if item == "SAMPLE" else item for item in extra]
    code, _, err = main("explain", SHAPES_MODEL, *extra, "--out", tmp_path)
    assert code == 2
    assert_one_line_error(err, *words)


def test_demo_sample_out_of_range_names_the_valid_range(main, tmp_path):
    code, _, err = main("demo", "--sample", 9, "--out", tmp_path)
    assert code == 2
    assert_one_line_error(err, "--sample must be 0..3", "got 9")


def test_out_naming_an_existing_file_is_a_one_line_error(main, tmp_path):
    existing = tmp_path / "taken.txt"
    existing.write_text("mine")
    for command in (["demo"], ["explain", SHAPES_MODEL, sample()]):
        code, _, err = main(*command, "--out", existing)
        assert code == 2
        assert_one_line_error(err, f"--out {existing} is an existing file")
    assert existing.read_text() == "mine"


def test_explain_writes_png_and_npz(main, tmp_path):
    code, out, err = main("explain", SHAPES_MODEL, sample(), "--box", "0,0,64,64", "--layers", "all", "--out", tmp_path / "o")
    assert code == 0, err
    assert (tmp_path / "o" / "shapes_0_grid.png").is_file()
    expl = sgc.load_explanation(tmp_path / "o" / "shapes_0_explanation.npz")
    assert expl.heatmaps.shape[:2] == (1, 1) and len(expl.layers) > 10
    assert expl.targets[0].box == (0, 0, 64, 64)
    assert "wrote 1 grid(s)" in out


def test_class_combines_with_box_pixel_and_mask(main, tmp_path):
    mask = np.zeros((128, 128), np.uint8)
    mask[10:40, 20:60] = 255
    cv2.imwrite(str(tmp_path / "region.png"), mask)
    runs = {
        "box": ["--box", "0,0,64,64", "--class", "2", "--class", "3"],
        "pixel": ["--pixel", "100,100", "--class", "1"],
        "mask": ["--mask", tmp_path / "region.png", "--class", "3"],
    }
    for name, options in runs.items():
        code, _, err = main("explain", SHAPES_MODEL, sample(), *options, "--out", tmp_path / name)
        assert code == 0, (name, err)
    box = sgc.load_explanation(tmp_path / "box" / "shapes_0_explanation.npz")
    assert [(t.box, t.class_index) for t in box.targets] == [((0, 0, 64, 64), 2), ((0, 0, 64, 64), 3)]
    assert box.classes.tolist() == [[2, 3]]
    pixel = sgc.load_explanation(tmp_path / "pixel" / "shapes_0_explanation.npz")
    assert isinstance(pixel.targets[0], sgc.PixelTarget) and (pixel.targets[0].row, pixel.targets[0].class_index) == (100, 1)
    assert pixel.classes.tolist() == [[1]]
    region = sgc.load_explanation(tmp_path / "mask" / "shapes_0_explanation.npz")
    assert region.classes.tolist() == [[3]]
    np.testing.assert_array_equal(region.masks[0, 0] > 0, mask > 0)  # the PNG's non-zero pixels, nothing else


def test_class_not_predicted_suggests_command_line_flags(main, tmp_path):
    model = keras.models.load_model(SHAPES_MODEL, compile=False)
    image = cli.read_image(sample(2), channels=3)
    predicted = set(np.unique(sgc.SegGradCAM(model).predict(image)).tolist())
    absent = sorted({0, 1, 2, 3} - predicted)
    assert absent, "sample 2 is expected to miss a class"
    code, _, err = main("explain", SHAPES_MODEL, sample(2), "--class", absent[0], "--out", tmp_path)
    assert code == 2
    assert_one_line_error(err, f"class {absent[0]} is not predicted in shapes_2.png", "--class", "--box")
    assert "ClassTarget" not in err and "region=" not in err


def test_fused_softmax_layer_suggests_pre(main, tmp_path):
    _, path = saved_model(tmp_path, "fused", head="fused-softmax")
    cv2.imwrite(str(tmp_path / "x.png"), np.full((32, 32, 3), 90, np.uint8))
    code, _, err = main("explain", path, tmp_path / "x.png", "--layers", "logits", "--out", tmp_path / "o")
    assert code == 2
    assert_one_line_error(err, "not on the path", "--layers logits:pre")
    code, _, err = main(
        "explain", path, tmp_path / "x.png", "--layers", "logits:pre", "--class", "0", "--box", "0,0,8,8", "--out", tmp_path / "o"
    )
    assert code == 0, err


@pytest.mark.parametrize("bias, region", [(10.0, "predicted"), (-10.0, "all")])
def test_one_channel_sigmoid_model_on_a_grayscale_png(main, tmp_path, bias, region):
    model, _ = saved_model(tmp_path, "unused", input_shape=(32, 32, 1), num_classes=1, head="sigmoid")
    kernel, _ = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([np.zeros_like(kernel), np.full((1,), bias, np.float32)])
    path = tmp_path / "binary.keras"
    model.save(path)
    gray = (np.arange(32 * 32).reshape(32, 32) % 251).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)  # a rank-2 (one-channel) PNG
    code, out, err = main("explain", path, tmp_path / "gray.png", "--out", tmp_path / "o")
    assert code == 0, err
    expl = sgc.load_explanation(tmp_path / "o" / "gray_explanation.npz")
    assert [(type(t).__name__, t.class_index, t.region) for t in expl.targets] == [("ClassTarget", 0, region)]
    np.testing.assert_array_equal(expl.images[0, ..., 0], gray / np.float32(255))  # the file's pixels, scaled
    if region == "all":
        assert "no foreground predicted" in err


def test_folder_with_a_bad_image_does_the_good_ones_and_counts_only_this_run(main, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(sample(0), folder / "a.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    shutil.copy(sample(1), folder / "c.png")
    out = tmp_path / "o"
    out.mkdir()
    (out / "old_grid.png").write_bytes(b"an earlier run")
    code, stdout, err = main("explain", SHAPES_MODEL, folder, "--component", "1:largest", "--signed", "--out", out)
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == ["a_explanation.npz", "a_grid.png", "c_explanation.npz", "c_grid.png", "old_grid.png"]
    assert "wrote 2 grid(s)" in stdout
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 2 and "b.png: could not read image" in errors[0] and "1 of 3 image(s) failed" in errors[1]


def test_warnings_are_one_clean_line_in_command_line_words(main, tmp_path):
    code, _, err = main("explain", SHAPES_MODEL, sample(0), "--layers", "all", "--out", tmp_path)
    assert code == 0, err
    expl = sgc.load_explanation(tmp_path / "shapes_0_explanation.npz")
    empty = int(expl.diagnose().empty.sum())
    lines = err.strip().splitlines()
    for line in lines:
        assert line.startswith("seggradcam explain: warning: "), line  # no source line, no file:line prefix
        assert "expl." not in line and "diagnose" not in line and "()" not in line
    warned = [line for line in lines if "empty after the ReLU" in line]
    if empty:
        assert len(warned) == 1 and f"{empty} of {expl.heatmaps[0].size // (128 * 128)} heatmap(s)" in warned[0]
        assert "--signed" in warned[0]
    else:
        assert not warned


def test_read_image_converts_to_the_model_channels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[..., ::-1])  # OpenCV writes BGR
    cv2.imwrite(str(tmp_path / "gray.png"), rgb[..., 0])
    rgba = np.concatenate([rgb[..., ::-1], np.full((5, 6, 1), 7, np.uint8)], axis=-1)
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    cv2.imwrite(str(tmp_path / "deep.png"), (rgb[..., 0].astype(np.uint16) * 257))
    np.testing.assert_array_equal(cli.read_image(tmp_path / "rgb.png"), rgb / np.float32(255))
    np.testing.assert_array_equal(cli.read_image(tmp_path / "rgba.png", channels=3), rgb / np.float32(255))
    assert cli.read_image(tmp_path / "gray.png").shape == (5, 6)
    np.testing.assert_array_equal(cli.read_image(tmp_path / "gray.png", channels=1)[..., 0], rgb[..., 0] / np.float32(255))
    np.testing.assert_array_equal(cli.read_image(tmp_path / "gray.png", channels=3), np.repeat(rgb[..., :1] / np.float32(255), 3, -1))
    np.testing.assert_array_equal(cli.read_image(tmp_path / "deep.png", channels=1)[..., 0], rgb[..., 0] / np.float32(255))
    luminance = (rgb / 255.0) @ np.array([0.299, 0.587, 0.114])
    # OpenCV's float32 RGB->gray uses the same weights; 1e-5 covers float32 rounding
    np.testing.assert_allclose(cli.read_image(tmp_path / "rgb.png", channels=1)[..., 0], luminance, atol=1e-5)
    with pytest.raises(cli.UsageError, match="has 3 channel"):
        cli.read_image(tmp_path / "rgb.png", channels=4)


def test_corrupt_image_and_model_exit_2(main, tmp_path):
    bad_image = tmp_path / "bad.png"
    bad_image.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, _, err = main("explain", SHAPES_MODEL, bad_image, "--out", tmp_path / "o")
    assert code == 2
    assert_one_line_error(err, "could not read image")
    bad_model = tmp_path / "bad.keras"
    bad_model.write_bytes(b"garbage")
    code, _, err = main("layers", bad_model)
    assert code == 2
    assert_one_line_error(err, "could not load model")


def test_lambda_model_needs_unsafe_flag(main, tmp_path):
    from .test_models import lambda_model_file

    path = lambda_model_file(tmp_path)
    code, _, err = main("layers", path)
    assert code == 2 and "--unsafe" in err
    code, _, err = main("layers", path, "--unsafe")
    assert code == 0, err
