"""The named RaftMLP variants (official S / M / L with the cross-scale MLP embedding), as data.

Source: okojoalg/raft-mlp @ 6060d5d9, configs/settings/imagenet-raft-mlp-cross-mlp-emb-{s,m,l}.yaml, built by
libs/train.py `initialize` (token_mixing_type ser_pm, embedding_type emb_cross_mlp, shortcut False,
pretrained_image_size 224, token_expansion_factor 2, channel_expansion_factor 4, raft_size 2 and patch sizes
(4, 2, 2, 2) in every level, embedding kernels (4, 8), (2, 4), (2, 4), (2,)). Counts are the official
`sum(p.numel() for p in model.parameters())` at 224 px with 1000 classes (the model has no buffers):

    raftmlp_s  dims (64, 128, 256, 512)    depths (2, 2, 6, 2)   9,868,768
    raftmlp_m  dims (96, 192, 384, 768)    depths (2, 2, 6, 2)  21,413,632
    raftmlp_l  dims (128, 192, 512, 1024)  depths (2, 2, 6, 2)  36,184,672

The registered defaults carry the yamls' drop_path_rate 0.1 (the training value; it does nothing in eval).
"""

from mixtok.models.raft_mlp import RaftMLP
from mixtok.models.registry import ModelSpec, register_model

PAPER = "RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality? (Tatsunami and Taki, 2021)"

# name: (official settings name, dims, official params); depths (2, 2, 6, 2) in all three
SIZES = {
    "raftmlp_s": ("imagenet-raft-mlp-cross-mlp-emb-s", (64, 128, 256, 512), 9_868_768),
    "raftmlp_m": ("imagenet-raft-mlp-cross-mlp-emb-m", (96, 192, 384, 768), 21_413_632),
    "raftmlp_l": ("imagenet-raft-mlp-cross-mlp-emb-l", (128, 192, 512, 1024), 36_184_672),
}


def _register_all() -> None:
    for name, (_, dims, count) in SIZES.items():
        kwargs = dict(depths=(2, 2, 6, 2), dims=dims, drop_path_rate=0.1)
        register_model(name, ModelSpec(RaftMLP, kwargs, PAPER, count))


_register_all()
