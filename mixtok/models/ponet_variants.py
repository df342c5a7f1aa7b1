"""The named PoNet models, as data: the LRA sequence classifiers of the official code, and the grid models.

LRA (lxchtan/PoNet @ cc9a29a3, examples/LRA/code/lra_config.py; max_seq_len rounded up to a power of two by
run_tasks.py): every task uses dim 64, 2 heads of 32, hidden 128, depth 2, dropout 0.1, mean pooling; per task

    ponet_lra_listops      vocab 32,  max_seq_len 2048, segment_num 64,   10 classes
    ponet_lra_text         vocab 512, max_seq_len 4096, segment_num 4096,  2 classes  (pieces of 2 tokens)
    ponet_lra_image        vocab 512, max_seq_len 1024, segment_num 32,   10 classes
    ponet_lra_pathfinder   vocab 512, max_seq_len 1024, segment_num 1,     2 classes

(LRA Retrieval's dual encoder is not built.) `LRA_OFFICIAL_PARAMS` holds each one's parameter count as
`sum(p.numel() for p in ModelForSC(config).parameters())` of the official code built on the CPU with that
task's config (torch 2.x, 2026-12-07), at the task's own class count; the zoo's `official_params` (a 224-px,
1000-class figure) is None for them. tests/models/test_ponet.py checks the counts.

ponet_vit_ti / ponet_vit_s are mixtok's isotropic grid models (PoNetViT) at DeiT-Ti / DeiT-S sizes (depth 12,
widths 192 / 384, heads of 32); no official image model or count exists.
"""

from mixtok.models.ponet import PoNetForSequenceClassification, PoNetViT
from mixtok.models.registry import ModelSpec, register_model

PAPER = "PoNet: Pooling Network for Efficient Token Mixing in Long Sequences (Tan et al., ICLR 2022)"

LRA_TASKS = {  # name: (vocab_size, max_seq_len, segment_num, num_classes)
    "listops": (32, 2048, 64, 10),
    "text": (512, 4096, 4096, 2),
    "image": (512, 1024, 32, 10),
    "pathfinder": (512, 1024, 1, 2),
}
# name: (official parameter count, the task's num_classes), from the official ModelForSC built on the CPU.
LRA_OFFICIAL_PARAMS = {
    "ponet_lra_listops": (226_442, 10),
    "ponet_lra_text": (387_202, 2),
    "ponet_lra_image": (191_626, 10),
    "ponet_lra_pathfinder": (190_594, 2),
}
VIT_SIZES = {"ti": (12, 192), "s": (12, 384)}  # name: (depth, width)


def _register_all() -> None:
    for task, (vocab, max_len, segments, classes) in LRA_TASKS.items():
        kwargs = dict(vocab_size=vocab, max_seq_len=max_len, segment_num=segments, num_classes=classes)
        register_model(f"ponet_lra_{task}", ModelSpec(PoNetForSequenceClassification, kwargs, PAPER, None))
    for size, (depth, dim) in VIT_SIZES.items():
        register_model(f"ponet_vit_{size}", ModelSpec(PoNetViT, dict(depths=(depth,), dims=(dim,)), PAPER, None))


_register_all()
