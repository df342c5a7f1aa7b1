"""The named LARP tokenizer: the one configuration the official code ships.

hywang66/LARP @ 8aaed63 configures one tokenizer: cfgs/larp_tokenizer.yaml with the widths that
scripts/train_larp_tokenizer_reproduce.sh passes (16 frames at 128 px, patch 8 x 8 x 4, 1024 holistic queries,
encoder and decoder 768 wide, 12 deep, 12 heads, an 8192 x 16 cosine VQ with stochastic temperature 0.03). That
script "can reproduce the pretrained model hywang66/LARP-L-long-tokenizer" (its comment), which README.md lists
with 173M parameters: hence the name `larp_l_long`. The paper's LARP-B / LARP-L / LARP-L-Long names pair a
tokenizer with AR generators of different sizes and training lengths (models/larp_ar.py: `llama-abs-B` 111M,
`llama-abs-L` 343M, `llama-abs-LP` 632M, the "LARP-L-Long-AR" of README.md); the repository gives no other
tokenizer width, so no other tokenizer is registered (B / L widths would be guesses).

What `official_params` counts: sum(p.numel() for p in model.parameters()) of the official `LARPTokenizer`
(models/larp_tokenizer.py) built from that config, minus its `prior_model` (the gptc-S prior, a separate module
here: mixtok/tokenizers/larp_prior.py, whose count docs/facts/official_counts.md lists beside it). The sin-cos
position tables are buffers and do not count.
"""

from mixtok.tokenizers.larp import LARP, LARP_VQ
from mixtok.tokenizers.registry import TokenizerSpec, register_tokenizer

LARP_PAPER = "LARP: Tokenizing Videos with a Learned Autoregressive Generative Prior (Wang et al., ICLR 2025)"
LARP_SOURCE = (
    "hywang66/LARP @ 8aaed63: models/larp_tokenizer.py + cfgs/larp_tokenizer.yaml with "
    "scripts/train_larp_tokenizer_reproduce.sh's widths, without prior_model"
)

LARP_L_LONG = dict(
    frames=16,
    image_size=128,
    patch_size=8,
    temporal_patch_size=4,
    num_latent_tokens=1024,
    encoder_width=768,
    encoder_depth=12,
    encoder_heads=12,
    decoder_width=768,
    decoder_depth=12,
    decoder_heads=12,
    quantizer=dict(LARP_VQ),
)

register_tokenizer("larp_l_long", TokenizerSpec(LARP, LARP_L_LONG, LARP_PAPER, 172_179_984, LARP_SOURCE))
