r"""One-D-Piece L-256 (TiTok-L with tail token drop, 256 tokens) on ImageNet-1k at 256 px, single-stage RGB.

    python -m mixtok.train \
        --config experiments/configs/imagenet/one_d_piece_l256.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/one_d_piece_l256

Expect: the official rFID 1.08 at 256 tokens (README); mixtok's single-stage recipe without a pretrained perceptual
network has not reproduced it (no run has been made). Eval reports PSNR, SSIM and codebook usage; rFID needs
Inception weights you supply (mixtok.evaluate.compute_rfid).

The recipe is `common.one_d_tokenizer`, which the six 1D tokenizer configs share; its sources and
its differences from the official two-stage one: common.py's docstring, "1D tokenizers".
Global batch 1024, 1,000,000 steps. `:runlocal` smoke-tests it on a laptop (sample
photos, 32 px, 4 steps).
"""

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, steps=1_000_000, perceptual_network="", perceptual_weights="")
    return common.one_d_tokenizer(arg, "one_d_piece_l256", official_batch=1024, prefix_eval_tokens=(1, 16, 64, 128))
