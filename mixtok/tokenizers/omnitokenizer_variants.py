"""The named OmniTokenizer variants: the three stages of the official recipe at the official widths.

FoundationVision/OmniTokenizer @ 701b619: scripts/recons/train.sh. All: dim (`--embedding_dim`) 512, heads 8,
dim_head 64, spatial_depth 4, temporal_depth 4, ff_mult 4 (the default), patch 8, `--enc_block ttww --dec_block
tttt --twod_window_size 8`, causal temporal attention and causal PEG, 8192 x 8 codes with `--l2_code`.

    omnitokenizer_vq_stage1   stage 1 (images, 256 px): temporal patch 2, spatial_pos "rel"
    omnitokenizer_vq          stage 2 (joint image-video, multi-resolution): temporal patch 4, spatial_pos "rope"
    omnitokenizer_kl          stage 3 (`--use_vae --kl_weight 1e-6`): stage 2 with the KL bottleneck
                              (pre_vq_conv 512 -> 16: mean and log-variance of 8 channels)

What `official_params` counts: sum(p.numel() for p in m.parameters()) over the official
`OmniTokenizer_Encoder`, `OmniTokenizer_Decoder` and the `pre_vq_conv` / `post_vq_conv` Linears built with
those arguments (OmniTokenizer/omnitokenizer.py `VQGAN.__init__`; counted with tools/make_omnitokenizer_fixtures.py
--counts, PyTorch 2.14, CPU). Not counted: the EMA codebook (buffers, mixtok's `quantizer_state`), the
discriminators and LPIPS (training losses). The count includes the weights that the official model holds but
never uses: every 't' attention's `context_norm` gamma and, where spatial_pos is "rel" (all temporal layers, and
the spatial ones of stage 1), its continuous-position-bias MLP (2 -> 512 -> 512 -> 8, 268,296 weights), which
the PyTorch >= 2.1 path does not apply (mixtok/tokenizers/omnitokenizer_layers.py).
"""

from mixtok.tokenizers.omnitokenizer import OMNITOKENIZER_KL, OMNITOKENIZER_VQ, OmniTokenizer
from mixtok.tokenizers.registry import TokenizerSpec, register_tokenizer

PAPER = "OmniTokenizer: A Joint Image-Video Tokenizer for Visual Generation (Wang et al., NeurIPS 2024)"
SOURCE = "FoundationVision/OmniTokenizer @ 701b619: OmniTokenizer/omnitokenizer.py + scripts/recons/train.sh ({})"

COMMON = dict(
    patch_size=8,
    dim=512,
    heads=8,
    dim_head=64,
    ff_mult=4.0,
    temporal_depth=4,
    encoder_blocks="ttww",
    decoder_blocks="tttt",
    window_size=8,
    causal_temporal=True,
    causal_peg=True,
)

# name: (temporal patch, spatial_pos, quantizer, official params, stage)
VARIANTS = {
    "omnitokenizer_vq_stage1": (2, "rel", OMNITOKENIZER_VQ, 54_923_848, "stage 1"),
    "omnitokenizer_vq": (4, "rope", OMNITOKENIZER_VQ, 53_708_440, "stage 2"),
    "omnitokenizer_kl": (4, "rope", OMNITOKENIZER_KL, 53_712_544, "stage 3"),
}


def _register_all() -> None:
    for name, (temporal_patch, spatial_pos, quantizer, count, stage) in VARIANTS.items():
        kwargs = dict(COMMON, temporal_patch_size=temporal_patch, spatial_pos=spatial_pos, quantizer=dict(quantizer))
        register_tokenizer(name, TokenizerSpec(OmniTokenizer, kwargs, PAPER, count, SOURCE.format(stage)))


_register_all()
