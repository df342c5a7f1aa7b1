"""Kernels: each op beside its plain-jnp reference, with an `impl=` switch (DESIGN.md, Kernels)."""

from mixtok.kernels.spectral_filter import spectral_filter

__all__ = ["spectral_filter"]
