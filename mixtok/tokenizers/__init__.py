"""Visual tokenizers: quantizers, 1D and 2D tokenizers, their losses (mixtok.tokenizers).

tokenizer = create_tokenizer("titok_s128")          # list_tokenizers() names the variants
quantizer = make_quantizer("fsq", levels="fsq_64000")
"""

from mixtok.tokenizers import (
    larp_variants,  # noqa: F401  (registers the variants)
    omnitokenizer_variants,  # noqa: F401  (registers the variants)
    titok_variants,  # noqa: F401  (registers the variants)
    vqgan_variants,  # noqa: F401  (registers the variants)
)
from mixtok.tokenizers.base import QUANTIZER_STATE, QuantizerOutput, TokenizerOutput
from mixtok.tokenizers.flextok import FlexTok
from mixtok.tokenizers.larp import LARP
from mixtok.tokenizers.larp_prior import LARPPrior
from mixtok.tokenizers.losses import (
    LogitPerceptualLoss,
    PatchGANDiscriminator,
    PerceptualLoss,
    SmallFeatureNet,
    TiTokDiscriminator,
    adaptive_generator_weight,
    gan_weight_at,
    hinge_d_loss,
    hinge_g_loss,
    lecam_regularization,
    lpips_distance,
    non_saturating_d_loss,
    non_saturating_g_loss,
    reconstruction_loss,
    update_lecam_ema,
)
from mixtok.tokenizers.omnitokenizer import OmniTokenizer
from mixtok.tokenizers.quantizers import (
    BSQ,
    FSQ,
    FSQ_PRESETS,
    LFQ,
    QUANTIZERS,
    DiagonalGaussian,
    ResidualQuantizer,
    VectorQuantizer,
    make_quantizer,
)
from mixtok.tokenizers.registry import (
    TOKENIZERS,
    TokenizerSpec,
    create_tokenizer,
    list_tokenizers,
    register_tokenizer,
    tokenizer_spec,
)
from mixtok.tokenizers.stochastic_vq import StochasticVectorQuantizer
from mixtok.tokenizers.titok import TiTok
from mixtok.tokenizers.vqgan import VQGAN, VQGANDecoder, VQGANEncoder

__all__ = [
    "BSQ",
    "DiagonalGaussian",
    "FSQ",
    "FSQ_PRESETS",
    "FlexTok",
    "LARP",
    "LARPPrior",
    "LFQ",
    "LogitPerceptualLoss",
    "OmniTokenizer",
    "PatchGANDiscriminator",
    "PerceptualLoss",
    "QUANTIZERS",
    "QUANTIZER_STATE",
    "QuantizerOutput",
    "ResidualQuantizer",
    "SmallFeatureNet",
    "StochasticVectorQuantizer",
    "TOKENIZERS",
    "TiTok",
    "TiTokDiscriminator",
    "TokenizerOutput",
    "TokenizerSpec",
    "VQGAN",
    "VQGANDecoder",
    "VQGANEncoder",
    "VectorQuantizer",
    "adaptive_generator_weight",
    "create_tokenizer",
    "gan_weight_at",
    "hinge_d_loss",
    "hinge_g_loss",
    "lecam_regularization",
    "list_tokenizers",
    "lpips_distance",
    "make_quantizer",
    "non_saturating_d_loss",
    "non_saturating_g_loss",
    "reconstruction_loss",
    "register_tokenizer",
    "tokenizer_spec",
    "update_lecam_ema",
]
