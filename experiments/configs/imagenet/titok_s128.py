r"""TiTok-S-128 (ViT-S encoder and decoder, 128 tokens) on ImageNet-1k at 256 px, single-stage RGB.

    python -m mixtok.train \
        --config experiments/configs/imagenet/titok_s128.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/titok_s128

Expect: the official rFID 1.71 (two-stage, paper); mixtok's single-stage recipe without a pretrained perceptual network
has not reproduced it (no run has been made). Eval reports PSNR, SSIM and codebook usage; rFID needs
Inception weights you supply (mixtok.evaluate.compute_rfid).

The recipe is `common.one_d_tokenizer`, which the six 1D tokenizer configs share; its sources and
its differences from the official two-stage one: common.py's docstring, "1D tokenizers".
Global batch 256, 1,000,000 steps. `:runlocal` smoke-tests it on a laptop (sample
photos, 32 px, 4 steps).
"""

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=256, steps=1_000_000, perceptual_network="", perceptual_weights="")
    return common.one_d_tokenizer(arg, "titok_s128", official_batch=256)
