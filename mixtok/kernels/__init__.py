"""Kernels: each op a package beside its plain-jnp reference, with one `impl=` vocabulary (dispatch.py).

    from mixtok.kernels import spectral_filter, dct_filter, linear_attention

Each op's package holds its public function (`__init__.py`), its definition (`reference.py`), the
XLA form (`xla.py`), and its Pallas kernels where it has them (`pallas_tpu.py`: Mosaic TPU
`pl.pallas_call`, interpretable on CPU; `mosaic_gpu.py`: Mosaic GPU `plgpu.kernel`), each with a
frozen dataclass of block sizes. `impl` is "auto", "reference", "xla" or "pallas" for every op.
"""

from mixtok.kernels.dct_filter import dct_filter
from mixtok.kernels.dispatch import IMPLS
from mixtok.kernels.linear_attention import LinearAttentionBlocks, linear_attention
from mixtok.kernels.selective_scan import selective_scan
from mixtok.kernels.spectral_filter import SpectralFilterBlocks, spectral_filter
from mixtok.kernels.ssd_scan import ssd_scan

__all__ = [
    "IMPLS",
    "LinearAttentionBlocks",
    "SpectralFilterBlocks",
    "dct_filter",
    "linear_attention",
    "selective_scan",
    "spectral_filter",
    "ssd_scan",
]
