"""The package as a stranger gets it: a wheel that carries its models, samples and licence,
declares no TensorFlow build of its own, installs into a fresh virtual environment without
downloading anything, and runs ``seggradcam demo`` from a folder outside the source tree.

Installing TensorFlow into the fresh environment from the package index would cost a minute
and a gigabyte, so that environment sees the packages of the running one through a .pth
file: a folder of links to everything installed here *except* seggradcam itself (and the
.pth files that would bring an editable install back). seggradcam comes only from the wheel.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [f"seggradcam/data/models/{name}_unet.{ext}" for name in ("shapes", "digits", "biased") for ext in ("keras", "json")] + [
    f"seggradcam/data/samples/{name}.npz" for name in ("shapes", "digits", "biased")
]


def clean_env() -> dict:
    """The environment for the fresh install: nothing that would put the source tree on the path."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the files a source distribution holds (no build isolation:
    nothing is downloaded; the build writes into the copy, never into the checkout)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "seggradcam", source / "seggradcam", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = work / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = dist.glob("seggradcam-*.whl")
    return path


def test_wheel_carries_data_and_licence_and_no_tensorflow_requirement(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        licence = next(name for name in names if name.endswith("LICENSE") and ".dist-info/" in name)
        licence_text = archive.read(licence).decode()
    assert set(SHIPPED) <= names
    assert {f"seggradcam/data/samples/shapes_{i}.png" for i in range(4)} <= names
    assert not any(name.startswith(("tests/", "examples/", "benchmarks/", "docs/")) for name in names)
    assert "MIT License" in licence_text
    # setuptools >= 77 writes License-Expression (metadata 2.4), older ones License
    assert (metadata["License-Expression"] or metadata["License"]) == "MIT"
    assert metadata["Author"] == "seggradcam developers"
    assert metadata["Requires-Python"] == ">=3.11,<3.14"
    requirements = metadata.get_all("Requires-Dist")
    unconditional = [req for req in requirements if "extra ==" not in req]
    assert not [req for req in unconditional if req.lower().startswith("tensorflow")], unconditional
    assert 'tensorflow-cpu>=2.21; extra == "cpu"' in requirements
    assert 'tensorflow>=2.21; extra == "tensorflow"' in requirements
    for extra in ("audit", "ray", "test"):
        assert extra in metadata.get_all("Provides-Extra")


def site_packages_of(python: Path) -> Path:
    out = subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True, env=clean_env()
    )
    return Path(out.strip())


def test_wheel_installs_into_a_fresh_venv_and_the_demo_runs_elsewhere(wheel, tmp_path):
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    own = site_packages_of(python)

    # this environment's packages, seggradcam left out, visible to the fresh one
    view = tmp_path / "installed-here"
    view.mkdir()
    for site in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]):
        for entry in Path(site).iterdir():
            if "seggradcam" in entry.name.lower() or entry.suffix == ".pth" or (view / entry.name).exists():
                continue
            (view / entry.name).symlink_to(entry)
    (own / "installed-here.pth").write_text(f"{view}\n")

    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
    )
    assert install.returncode == 0, install.stdout + install.stderr
    installed = sorted(path.name for path in own.iterdir() if "tensorflow" in path.name.lower())
    assert installed == []  # the wheel pulled in no TensorFlow build

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import seggradcam, seggradcam.data as d; print(seggradcam.__file__); print(d.data_dir())"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert where.returncode == 0, where.stderr
    module_file, data_folder = where.stdout.split()
    assert Path(module_file).parent == own / "seggradcam"  # from the wheel, not the source tree
    assert Path(data_folder) == own / "seggradcam" / "data"

    demo = subprocess.run(
        [str(environment / "bin" / "seggradcam"), "demo", "--out", "out"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    grid = elsewhere / "out" / "demo_grid.png"
    assert grid.is_file() and grid.stat().st_size > 10_000
    assert "wrote" in demo.stdout and "bottleneck_conv2" in demo.stdout
