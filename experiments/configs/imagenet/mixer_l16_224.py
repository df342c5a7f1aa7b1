r"""MLP-Mixer-L/16 on ImageNet-1k from scratch at 224 px, with the Mixer-B/16 recipe of big_vision.

    python -m mixtok.train \
        --config experiments/configs/imagenet/mixer_l16_224.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/mixer_l16_224

Expect: no published figure. The only official ImageNet-1k-from-scratch Mixer recipe,
google-research/big_vision big_vision/configs/mlp_mixer_i1k.py (@ fa954352), is for Mixer-B/16 (76.3%
top-1 in 300 epochs); the paper trains Mixer-L/16 on ImageNet-21k / JFT-300M and fine-tunes. This config
runs B/16's recipe unchanged (experiments/configs/imagenet/mixer_b16_224.py describes it and how mixtok
departs from it), stochastic depth 0.1 included: a choice of mixtok's, not a recipe for this size.

Compute: 93,835 steps of 4,096 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block, 4 steps). Run the
same command with the same --workdir to resume.
"""

from mixtok.train.config_files import import_beside

recipe = import_beside(__file__, "mixer_b16_224")


def get_config(arg=None):
    return recipe.mixer_config(arg, "mixer_l16_224", drop_path_rate=0.1)  # B/16's stoch_depth, unchanged
