"""mixtok: token mixers and visual tokenizers in JAX/Flax."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.6",
    "flax>=0.10",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "grain>=0.2.10",
    "ml-collections>=1.0",
    "numpy>=1.26",
    "absl-py>=2.1",
    "tqdm>=4.66",
    "tensorboardX>=2.6",
    "scikit-learn>=1.4",  # the bundled handwritten-digits dataset
    "scikit-image>=0.22",
    "scipy>=1.11",
    "pillow>=10.0",
    "array-record>=0.5",
    "msgpack>=1.0",
    "matplotlib>=3.8",  # the plots of `python -m mixtok.report`
]

EXTRAS_REQUIRE = {
    # ruff: lint and format, checked by .ci/run (configured in pyproject.toml).
    # pytest-timeout: a test that hangs fails on its own (its worker is replaced) instead of
    # stalling the whole run until CI's limit.
    # nbclient, nbformat, ipykernel, jupytext: tests/test_notebooks.py runs notebooks/ in a python3 kernel and
    # checks each .ipynb against its jupytext .py.
    "test": [
        "pytest>=8.0",
        "pytest-xdist>=3.5",
        "pytest-timeout>=2.3",
        "ruff>=0.6",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
        "jupytext>=1.16",
        # gcsfs and a local Cloud Storage emulator: tests/reliability/test_gcs_workdir.py trains into gs://.
        "gcsfs>=2025.1",
        "gcp-storage-emulator>=2026.7",
        "PyWavelets>=1.4",  # tests/mixers/test_wavelet.py checks WaveMix's Haar DWT against pywt.dwt2 / wavedec2
        "av>=12",  # tests/data/test_video.py writes and decodes a tiny mp4 (data.name="video_folder")
    ],
    # gs:// workdirs (mixtok/train/storage.py): gcsfs is what etils.epath, orbax's path type, uses for gs://
    # without TensorFlow.
    "gcs": ["gcsfs>=2025.1"],
    # Video files in data.name="video_folder" (mixtok/data/videos.py): PyAV, the FFmpeg bindings (wheels bundle
    # FFmpeg). Frame folders and sample_videos need nothing more.
    "video": ["av>=12"],
    # Reading timm's pretrained checkpoints (.safetensors) without PyTorch.
    "weights": ["safetensors>=0.4"],
    # The PyTorch references that the parity tests compare against. timm needs torchvision,
    # which PyPI only ships beside the CUDA build of torch (about 5 GB), so it is opt-in.
    "timm": ["torch>=2.1", "timm>=1.0.20", "safetensors>=0.4"],
    # `python -m mixtok.compile_check --topology v5e-8 ...` on a machine without a TPU: libtpu compiles
    # for TPU topologies. jax[tpu] pins the libtpu that matches the installed jax (0.0.42.* for 0.10.2).
    "tpu-aot": ["jax[tpu]>=0.6"],
}

setup(
    name="mixtok",
    version="0.1.0",
    description="Vision token mixers and visual tokenizers in JAX/Flax: faithful, fast, sharded.",
    packages=find_packages(include=["mixtok", "mixtok.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
