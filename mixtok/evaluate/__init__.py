"""Metrics for tokenizers and models: PSNR, SSIM, Frechet distance (rFID, FVD), per-frame and temporal video
metrics, codebook statistics (mixtok.evaluate)."""

from mixtok.evaluate.codebook import (
    CodebookCounter,
    code_counts,
    codebook_entropy_bits,
    codebook_perplexity,
    codebook_usage,
    perplexity_from_counts,
    present_code_counts,
    usage_from_counts,
)
from mixtok.evaluate.frechet import (
    FeatureStatistics,
    compute_rfid,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    trace_sqrt_product,
)
from mixtok.evaluate.image_metrics import gaussian_taps, psnr, ssim
from mixtok.evaluate.video_metrics import compute_fvd, frame_psnr, frame_ssim, temporal_psnr

__all__ = [
    "CodebookCounter",
    "FeatureStatistics",
    "code_counts",
    "codebook_entropy_bits",
    "codebook_perplexity",
    "codebook_usage",
    "compute_fvd",
    "compute_rfid",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "frame_psnr",
    "frame_ssim",
    "gaussian_taps",
    "perplexity_from_counts",
    "present_code_counts",
    "psnr",
    "ssim",
    "temporal_psnr",
    "trace_sqrt_product",
    "usage_from_counts",
]
