r"""raftmlp_m on ImageNet-1k at 224 px: RaftMLP (raft token mixing, cross-scale MLP embedding), the official recipe.

    python -m mixtok.train \
        --config experiments/configs/imagenet/raftmlp_m.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/raftmlp_m

The recipe of raftmlp_s.py (okojoalg/raft-mlp @ 6060d5d9: configs/settings/imagenet-raft-mlp-cross-mlp-emb-m.yaml
differs from the -s yaml only in the model's dims, here (96, 192, 384, 768)), with that module's differences. The
repository states no accuracy for it.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4 steps).
"""

from mixtok.train.config_files import import_beside

recipe = import_beside(__file__, "raftmlp_s")


def get_config(arg=None):
    return recipe.raft_mlp_config(arg, "raftmlp_m")
