"""Kernels: each op beside its plain-jnp reference, with an `impl=` switch (DESIGN.md, Kernels)."""

from mixtok.kernels.dct_filter import dct_filter
from mixtok.kernels.linear_attention import linear_attention
from mixtok.kernels.spectral_filter import spectral_filter

__all__ = ["dct_filter", "linear_attention", "spectral_filter"]
