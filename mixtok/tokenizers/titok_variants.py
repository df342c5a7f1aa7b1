"""The named 1D tokenizers: TiTok, One-D-Piece (single-stage RGB form) and a FlexTok-style stand-in.

Sizes (encoder = decoder; width / depth / heads): small 512/8/8, base 768/12/12, large 1024/24/16; all
256 px, patch 16, an L2-normalised VQ of 4096 x 12 codes with beta 0.25 (the stage-1 configs:
bytedance/1d-tokenizer @ 942a96f: configs/training/TiTok/stage1/titok_{l32,b64,s128}.yaml;
turingmotors/One-D-Piece @ 473665d: configs/training/stage1/one-d-piece_{s,b,l}256.yaml).

What `official_params` counts: sum(p.numel() for p in model.parameters()) of the official `TiTok` class
(bytedance/1d-tokenizer @ 942a96f: modeling/titok.py; One-D-Piece's `OneDPiece` subclasses it and adds no
parameters) built from that stage-1 config with `finetune_decoder: False` (so no MaskGIT-VQGAN pixel
quantizer / decoder is instantiated) and `is_legacy: False` (the RGB decoder head Conv1x1(W -> 16*16*3) +
pixel shuffle + Conv3x3(3 -> 3) instead of the legacy head over 1024 proxy codes): encoder + decoder +
latent_tokens + the 4096 x 12 codebook. The released TiTok / One-D-Piece checkpoints are the legacy
two-stage models, so these are not the counts of released weights; those are (same source, legacy head,
without / with the frozen MaskGIT-VQGAN): titok_l32 610,314,252 / 641,054,735; titok_b64 174,073,612 /
204,814,095; titok_s128 52,934,156 / 83,674,639; One-D-Piece S-256 53,130,764 / 83,871,247,
B-256 174,515,980 / 205,256,463, L-256 611,002,380 / 641,742,863. mixtok.interop.titok refuses them with one
line; the released single-stage VQ tokenizers (README_TiTok.md: TiTok-BL-64 / BL-128 / SL-256 VQ8k, an encoder
base or small and a decoder large, 8192 x 64 codes) convert with it (their arguments: its `RELEASES`).

rFID (paper / README, legacy two-stage models): TiTok-L-32 2.21, B-64 1.70, S-128 1.71; One-D-Piece
L-256 1.08, B-256 1.11, S-256 1.48 (all 256 tokens).

`flextok_s` is not a released FlexTok model: the official widths live in the Hugging Face configs,
not in apple/ml-flextok, and the official decoder is a rectified-flow model; see mixtok/tokenizers/flextok.py.
"""

from mixtok.tokenizers.flextok import FlexTok
from mixtok.tokenizers.registry import TokenizerSpec, register_tokenizer
from mixtok.tokenizers.titok import TiTok

TITOK_PAPER = "An Image is Worth 32 Tokens for Reconstruction and Generation (Yu et al., NeurIPS 2024)"
ONE_D_PIECE_PAPER = "One-D-Piece: Image Tokenizer Meets Quality-Controllable Compression (Miwa et al., 2025)"
FLEXTOK_PAPER = "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length (Bachmann et al., 2025)"

TITOK_SOURCE = (
    "bytedance/1d-tokenizer @ 942a96f: modeling/titok.py + configs/training/TiTok/stage1/{}.yaml "
    "with finetune_decoder=False, is_legacy=False"
)
ONE_D_PIECE_SOURCE = (
    "turingmotors/One-D-Piece @ 473665d: modeling/one_d_piece.py + configs/training/stage1/{}.yaml; "
    "counted on bytedance/1d-tokenizer @ 942a96f modeling/titok.py with that config, "
    "finetune_decoder=False, is_legacy=False"
)

# name: (width, depth, heads)
VIT_SIZES = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}

TITOK_VQ = {"name": "vq", "codebook_size": 4096, "code_dim": 12, "l2_normalize": True, "beta": 0.25}

# name: (size, latent tokens, tail token drop, official params, config file)
VARIANTS = {
    "titok_l32": ("large", 32, False, 606_904_160, "titok_l32"),
    "titok_b64": ("base", 64, False, 171_909_216, "titok_b64"),
    "titok_s128": ("small", 128, False, 51_753_312, "titok_s128"),
    "one_d_piece_s256": ("small", 256, True, 51_949_920, "one-d-piece_s256"),
    "one_d_piece_b256": ("base", 256, True, 172_351_584, "one-d-piece_b256"),
    "one_d_piece_l256": ("large", 256, True, 607_592_288, "one-d-piece_l256"),
}


def _register_all() -> None:
    for name, (size, num_tokens, tail_drop, count, config) in VARIANTS.items():
        width, depth, heads = VIT_SIZES[size]
        kwargs = dict(
            image_size=256,
            patch_size=16,
            encoder_width=width,
            encoder_depth=depth,
            encoder_heads=heads,
            decoder_width=width,
            decoder_depth=depth,
            decoder_heads=heads,
            num_latent_tokens=num_tokens,
            quantizer=dict(TITOK_VQ),
            tail_token_drop=tail_drop,
        )
        paper, source = (ONE_D_PIECE_PAPER, ONE_D_PIECE_SOURCE) if tail_drop else (TITOK_PAPER, TITOK_SOURCE)
        register_tokenizer(name, TokenizerSpec(TiTok, kwargs, paper, count, source.format(config)))
    # A stand-in (official_params None): ViT-S-sized encoder and decoder, 256 registers, FSQ 64,000.
    register_tokenizer(
        "flextok_s",
        TokenizerSpec(
            FlexTok,
            dict(
                image_size=256,
                patch_size=16,
                encoder_width=512,
                encoder_depth=8,
                encoder_heads=8,
                decoder_width=512,
                decoder_depth=8,
                decoder_heads=8,
                num_registers=256,
                quantizer={"name": "fsq", "levels": "fsq_64000"},
                nested_dropout_mode="pow2",
            ),
            FLEXTOK_PAPER + " [deterministic-decoder stand-in]",
            None,
            "apple/ml-flextok @ 87d00cc (stand-in: no released width; deterministic ViT decoder)",
        ),
    )


_register_all()
