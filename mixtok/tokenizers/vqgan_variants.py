"""The named VQGAN variants: MaskGIT's tokenizer and a tiny stand-in for quickstarts and tests.

`maskgit_vqgan`: google-research/maskgit @ 1db2359: maskgit/configs/vqgan_config.py (`config.vqvae`):
filters 128, channel multipliers (1, 1, 2, 2, 4), 2 res blocks, swish, GroupNorm, average-pool downsampling,
VQ with 1024 codes x 256 (embedding_dim), commitment cost 0.25 -> f16, 256 px -> 16 x 16 tokens.
Its official parameter count, 54,515,587, is `sum(p.numel())` over the `encoder`, `decoder` and `quantize`
modules of bytedance/1d-tokenizer @ 942a96f: modeling/modules/maskgit_vqgan.py built as TiTok's
`PretrainedTokenizer` builds it (encoder 23,775,104 + decoder 30,478,339 + codebook 262,144); the official
flax `VQVAE` initialised at 256 px has the same number of parameters (no buffers, no discriminator).

`vqgan_tiny`: not a paper model (official_params None); filters 32, multipliers (1, 2) (f2), one res block per
level and a 256 x 32 VQ, so it initialises and trains in seconds on a CPU.
"""

from flax.core import FrozenDict

from mixtok.tokenizers.registry import TokenizerSpec, register_tokenizer
from mixtok.tokenizers.vqgan import MASKGIT_QUANTIZER, VQGAN

PAPER = "MaskGIT: Masked Generative Image Transformer (Chang et al., CVPR 2022)"
OFFICIAL_SOURCE = (
    "google-research/maskgit @ 1db2359: maskgit/nets/vqgan_tokenizer.py "
    "(maskgit/configs/vqgan_config.py); "
    "count: bytedance/1d-tokenizer @ 942a96f: modeling/modules/maskgit_vqgan.py"
)
MASKGIT_VQGAN_PARAMS = 54_515_587

MASKGIT_VQGAN = dict(
    image_size=256,
    filters=128,
    channel_multipliers=(1, 1, 2, 2, 4),
    num_res_blocks=2,
    quantizer=MASKGIT_QUANTIZER,
    conv_downsample=False,
    activation="swish",
    norm_type="GN",
)
VQGAN_TINY = dict(
    image_size=32,
    filters=32,
    channel_multipliers=(1, 2),
    num_res_blocks=1,
    quantizer=FrozenDict({"name": "vq", "codebook_size": 256, "code_dim": 32, "beta": 0.25}),
)


def _register_all() -> None:
    register_tokenizer(
        "maskgit_vqgan", TokenizerSpec(VQGAN, MASKGIT_VQGAN, PAPER, MASKGIT_VQGAN_PARAMS, OFFICIAL_SOURCE)
    )
    register_tokenizer(
        "vqgan_tiny", TokenizerSpec(VQGAN, VQGAN_TINY, "stand-in (not a paper model): " + PAPER, None, OFFICIAL_SOURCE)
    )


_register_all()
