r"""wavemix_192_16 on ImageNet-1k at 224 px: WaveMix-192/16 (multi-level Haar DWT token mixing), level 3.

    python -m mixtok.train \
        --config experiments/configs/imagenet/wavemix_192_16.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/wavemix_192_16

Expect: the released weights (pranavphoenix/WaveMix Saved_weights/ImageNet/wavemix_28M_75.06.py, file
wavemix_192_16_75.06.pth) carry 75.06% top-1 in their name; the README's table states 75.32% on ImageNet-1k.
mixtok has not reproduced either, and this recipe is mostly mixtok's choice (below): the repository has no ImageNet
training script and the ImageNet recipe is not in it.

Paper: WaveMix: A Resource-efficient Neural Network for Image Analysis (Jeevan, Viswanathan, A S, Sethi, 2022).

Model (stated): Saved_weights/ImageNet/wavemix_28M_75.06.py builds wavemix/classification.py's WaveMix(num_classes
1000, depth 16, mult 2, ff_channel 192, final_dim 192, dropout 0.5, level 3, initial_conv 'pachify', patch_size 4):
`create_model("wavemix_192_16")`, 27,857,608 parameters. Evaluation (stated): Image_Classification/timm.py's
`_cfg` for these weights, input 224, crop_pct 1.0 (resize to 224, no border cut), bicubic, ImageNet mean / std.

Optimiser (stated for the repository's other datasets, taken here as the closest statement): the training scripts
in Image_Classification/ (example_cifar10.py, galaxy10.py, tinyimagenet.py, cifar_10_using_imagenet_weights.py)
train with PyTorch's AdamW(lr 0.001, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01) at a constant rate, with
automatic mixed precision and a plain cross-entropy (no label smoothing, no Mixup / CutMix), until 20 epochs pass
without a better top-1, then switch to SGD(lr 0.001, momentum 0.9) from the best checkpoint until the same stopping
rule ends it. Their training augmentation is RandomHorizontalFlip + TrivialAugmentWide, batch 512 (the CIFAR
scripts).

mixtok's choices, where the repository states nothing for ImageNet or mixtok cannot run what it states:
- AdamW lr 1e-3 at global batch 512 (the CIFAR scripts' batch; `batch_size=` scales the rate linearly), betas
  (0.9, 0.999), eps 1e-8, weight decay 0.01 on every parameter (PyTorch's AdamW over model.parameters():
  `weight_decay_on="all"`), no gradient clipping; the rate constant (warmup_cosine with min_lr = lr and no
  warm-up). The early stopping and the SGD phase are not modelled: 300 epochs of the AdamW phase (the length is
  a choice; the official runs stop by the validation top-1).
- Training crops: mixtok's random resized crop (area 0.08-1) and flip with bicubic interpolation (the scripts'
  datasets need no crop); TrivialAugmentWide (torchvision: one op per image at a uniformly random magnitude) is
  approximated by timm's RandAugment with one op and a uniform magnitude, `rand-n1-m10-mstd101-inc1` (mixtok has
  no TrivialAugment; its op set and ranges are RandAugment's, narrower than TrivialAugmentWide's).
- No label smoothing, Mixup, CutMix, random erasing, weight EMA, drop path or head dropout (none is in the scripts);
  dropout 0.5 inside the feed-forwards (the model's). `:bf16` is the nearest to the scripts' autocast.

Compute: 750,683 steps of 512 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px: a 16 x 16 grid for the 3-level DWT, one
block, 4 steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")

LR = 1e-3  # Image_Classification/*.py: optim.AdamW(model.parameters(), lr=0.001, ..., weight_decay=0.01)
BATCH = 512  # Image_Classification/example_cifar10.py, tinyimagenet.py: batch_size = 512


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=BATCH, epochs=300)  # the length is mixtok's choice (docstring)
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Image_Classification/timm.py _cfg: crop_pct 1.0, bicubic, IMAGENET_DEFAULT_MEAN / STD. Training: flip +
    # TrivialAugmentWide in the scripts; its one-op, uniform-magnitude RandAugment stand-in (docstring).
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=1.0,
        train_interpolation="bicubic",
        auto_augment="rand-n1-m10-mstd101-inc1",
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name="wavemix_192_16", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(dropout=0.5))  # wavemix_28M_75.06.py; the variant's default
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("wavemix_192_16"))  # the same layers, fewer

    lr = LR * config.batch_size / BATCH
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=lr,
            min_lr=lr,  # a constant rate, as the scripts' AdamW without a scheduler
            warmup_steps=0,
            weight_decay=0.01,
            weight_decay_on="all",  # PyTorch's AdamW over model.parameters(): biases and BatchNorm weights too
            b1=0.9,
            b2=0.999,
            eps=1e-8,
        )
    )
    config.label_smoothing = 0.0  # nn.CrossEntropyLoss()
    return config
