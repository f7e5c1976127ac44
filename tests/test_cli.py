"""The seggradcam command, run as a subprocess."""

import os
import subprocess
import sys

import pytest

from seggradcam.data import data_dir


def run(*args, cwd):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "seggradcam.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_demo_writes_a_grid_and_prints_the_table(tmp_path):
    result = run("demo", "--out", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    grid = tmp_path / "demo" / "demo_grid.png"
    assert grid.is_file() and grid.stat().st_size > 10_000
    assert "bottleneck_conv2" in result.stdout and "in mask" in result.stdout
    import cv2

    picture = cv2.imread(str(grid))
    assert picture is not None and picture.shape[0] > 200 and picture.std() > 10


def test_layers_marks_auto_and_decoder(tmp_path):
    result = run("layers", str(data_dir() / "models" / "shapes_unet.keras"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("bottleneck_conv2"))
    assert "auto" in line
    assert "decoder" in next(line for line in result.stdout.splitlines() if line.startswith("dec1_up"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["missing.png"], "image file not found: missing.png"),
        (["SAMPLE", "--layers", "nope"], "no layer named 'nope'"),
        (["SAMPLE", "--class", "9"], "class index 9 is out of range"),
        (["SAMPLE", "--pixel", "1"], "--pixel must be 2 comma-separated integers"),
    ],
)
def test_explain_bad_arguments_exit_2_with_one_line(tmp_path, extra, message):
    sample = str(data_dir() / "samples" / "shapes_0.png")
    extra = [sample if item == "SAMPLE" else item for item in extra]
    result = run("explain", str(data_dir() / "models" / "shapes_unet.keras"), *extra, "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_explain_writes_png_and_npz(tmp_path):
    sample = str(data_dir() / "samples" / "shapes_0.png")
    result = run(
        "explain",
        str(data_dir() / "models" / "shapes_unet.keras"),
        sample,
        "--box",
        "0,0,64,64",
        "--layers",
        "all",
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "shapes_0_grid.png").is_file()

    import seggradcam as sgc

    expl = sgc.load_explanation(tmp_path / "o" / "shapes_0_explanation.npz")
    assert expl.heatmaps.shape[:2] == (1, 1) and len(expl.layers) > 10
    assert expl.targets[0].box == (0, 0, 64, 64)


def test_explain_a_folder_with_signed_maps(tmp_path):
    import shutil

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        shutil.copy(data_dir() / "samples" / f"shapes_{i}.png", folder)
    result = run(
        "explain",
        str(data_dir() / "models" / "shapes_unet.keras"),
        str(folder),
        "--component",
        "1:largest",
        "--signed",
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "shapes_0_explanation.npz",
        "shapes_0_grid.png",
        "shapes_1_explanation.npz",
        "shapes_1_grid.png",
    ]


def test_corrupt_image_and_model_exit_2(tmp_path):
    bad_image = tmp_path / "bad.png"
    bad_image.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = run("explain", str(data_dir() / "models" / "shapes_unet.keras"), str(bad_image), cwd=tmp_path)
    assert result.returncode == 2 and "could not read image" in result.stderr
    bad_model = tmp_path / "bad.keras"
    bad_model.write_bytes(b"garbage")
    result = run("layers", str(bad_model), cwd=tmp_path)
    assert result.returncode == 2 and "could not load model" in result.stderr
    assert "Traceback" not in result.stderr


def test_lambda_model_needs_unsafe_flag(tmp_path):
    from .test_models import lambda_model_file

    path = lambda_model_file(tmp_path)
    refused = run("layers", str(path), cwd=tmp_path)
    assert refused.returncode == 2 and "--unsafe" in refused.stderr
    allowed = run("layers", str(path), "--unsafe", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
