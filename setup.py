"""Packaging for seggradcam (the design card asks for setup.py).

TensorFlow is deliberately *not* an install requirement: it comes in several builds
(``tensorflow``, ``tensorflow-cpu``, vendor builds) that replace one another's files, so
installing seggradcam must never pull one in next to a user's own. Pick one with an extra:
``pip install "seggradcam[cpu]"`` (CPU-only build), ``"seggradcam[tensorflow]"`` (the
standard build) or ``"seggradcam[gpu]"`` (the standard build with NVIDIA CUDA libraries on
Linux). Without TensorFlow, ``import seggradcam`` and ``seggradcam --help`` still work and
the first use of the library raises an ImportError that names these commands.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

# Floors are the lowest versions the test suite was run with (see README, "Install").
TENSORFLOW = "2.21"
extras = {
    "cpu": [f"tensorflow-cpu>={TENSORFLOW}"],
    "tensorflow": [f"tensorflow>={TENSORFLOW}"],
    "gpu": [
        f'tensorflow[and-cuda]>={TENSORFLOW}; sys_platform == "linux"',
        f'tensorflow>={TENSORFLOW}; sys_platform != "linux"',
    ],
    "audit": ["pyarrow>=15", "zarr>=3"],
    "ray": ["ray[data]>=2.40"],
    "notebook": ["jupyterlab>=4", "ipykernel>=6.29"],
}
extras["test"] = [
    *extras["cpu"],
    *extras["audit"],
    *extras["ray"],
    "pytest>=8",
    "hypothesis>=6.100",
    "nbclient>=0.10",
    "nbformat>=5.10",
    "ipykernel>=6.29",
    # tests/test_packaging.py builds the wheel without build isolation (no download)
    "setuptools>=70.1",
]

setup(
    name="seggradcam",
    version="0.1.0",
    description="Seg-Grad-CAM and friends: explain Keras 3 semantic segmentation networks.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author="seggradcam developers",
    license="MIT",
    license_files=["LICENSE"],
    keywords=["grad-cam", "seg-grad-cam", "explainability", "xai", "semantic segmentation", "u-net", "keras", "tensorflow"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Intended Audience :: Developers",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Processing",
        "Framework :: Jupyter",
    ],
    # TensorFlow 2.21 has wheels for CPython 3.10 to 3.13; zarr 3 (the audit extra) and this
    # code base need 3.11.
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["seggradcam", "seggradcam.*"]),
    package_data={"seggradcam.data": ["README.md", "models/*.keras", "models/*.json", "samples/*.npz", "samples/*.png"]},
    include_package_data=False,
    install_requires=[
        "keras>=3.15",  # the shipped .keras models do not load with 3.12 to 3.14
        # seggradcam.data draws digits with OpenCV's Hershey fonts, which OpenCV 5 renders
        # differently from 4.x: the shipped digits model and its held-out set need OpenCV 5,
        # and OpenCV 5 needs NumPy 2 (so do the floors of scikit-image and matplotlib below)
        "numpy>=2.0",
        "opencv-python-headless>=5.0",
        "scikit-image>=0.24",
        "matplotlib>=3.9",
        "tqdm>=4.66",
    ],
    extras_require=extras,
    entry_points={"console_scripts": ["seggradcam=seggradcam.cli:main"]},
)
