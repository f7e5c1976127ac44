"""Packaging for seggradcam (the design card asks for setup.py)."""

from setuptools import find_packages, setup

setup(
    name="seggradcam",
    version="0.1.0",
    description="Seg-Grad-CAM and friends: explain Keras 3 semantic segmentation networks.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["seggradcam", "seggradcam.*"]),
    package_data={"seggradcam.data": ["README.md", "models/*.keras", "models/*.json", "samples/*.npz", "samples/*.png"]},
    include_package_data=False,
    install_requires=[
        "tensorflow-cpu==2.21.0",
        "keras>=3.10",
        "numpy>=1.26",
        "opencv-python-headless>=4.8",
        "scikit-image>=0.22",
        "matplotlib>=3.8",
        "tqdm>=4.66",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29"],
        "notebook": ["jupyterlab>=4", "ipykernel>=6.29"],
    },
    entry_points={"console_scripts": ["seggradcam=seggradcam.cli:main"]},
)
