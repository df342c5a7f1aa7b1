"""Mixup and CutMix inside the jitted train step, the way timm's `Mixup` mixes a batch.

Follows huggingface/pytorch-image-models: timm/data/mixup.py (`Mixup`, `mixup_target`, `rand_bbox`,
`rand_bbox_minmax`, `cutmix_bbox_and_lam`) and timm/loss/cross_entropy.py (`SoftTargetCrossEntropy`: that is
optax.softmax_cross_entropy with soft targets, which the classification task uses).
Papers: mixup (Zhang et al. 2017, https://arxiv.org/abs/1710.09412) and CutMix (Yun et al. 2019,
https://arxiv.org/abs/1905.04899).

Each image is mixed with its mirror in the batch (image i with image B-1-i, timm's `x.flip(0)`), and its
target is the same mix of the two smoothed one-hot labels:

    mixup   image_i = lam_i * x_i + (1 - lam_i) * x_{B-1-i}
    cutmix  image_i = x_i with the box [y_low:y_high, x_low:x_high] taken from x_{B-1-i}
    target_i = lam_i * smooth(label_i) + (1 - lam_i) * smooth(label_{B-1-i}),
    smooth(y) = one_hot(y) * (1 - s) + s / num_classes        (off = s/K, on = 1 - s + s/K)

Randomness is split from the mixing so the mixing can be checked against timm on fixed values:
`Mixup.draw(key, batch_size, image_size)` draws the `MixChoices` (lam, mixup or cutmix, the box) with a JAX
key, and `Mixup.apply(images, labels, choices)` mixes deterministically. Both are jittable with static
shapes: the box is a mask of iota comparisons, never a dynamic slice. Modes, as timm's:

    batch  one lam and one box for the whole batch (timm's default);
    pair   one draw per mirrored pair (i, B-1-i), shared by both images of the pair;
    elem   one draw per image.

What draw does, as timm's `_params_per_batch` / `_params_per_elem`: with probability `prob` a draw mixes
(otherwise lam = 1 and the image is left alone); when both alphas are > 0 it is cutmix with probability
`switch_prob`, else mixup; lam ~ Beta(alpha, alpha) of the chosen kind. A cutmix box is square-ish with
sides floor(H * sqrt(1 - lam)), floor(W * sqrt(1 - lam)) around a uniform centre, clipped to the image
(`rand_bbox`), or, with `cutmix_minmax=(lo, hi)`, sides uniform in [int(H lo), int(H hi)) placed wholly
inside the image (`rand_bbox_minmax`; timm then forces cutmix_alpha = 1). With `correct_lam` (and always
with cutmix_minmax) a cutmix lam becomes 1 - box area / image area.

Differences from timm, by design:
- timm draws with numpy's global RNG on the host; this draws with a JAX key on the device, so the same
  distributions, not the same samples.
- Inside the train step the batch is the global batch (all devices, all hosts), so images are mixed with
  their mirror in the global batch; timm mixes each process's local batch. The flip is then a
  cross-device permute of the batch.
- The box side floor(H * sqrt(1 - lam)) is computed in float32; timm's batch mode computes it in float64,
  so a lam within float32 rounding of a side's integer boundary may give a side one pixel apart.
- timm's `mixup_enabled` switch (turning mixing off after `--mixup-off-epoch`) and multi-label targets
  are not here.
"""

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

MODES = ("batch", "pair", "elem")


class MixChoices(NamedTuple):
    """The random choices of one mix, per draw: N = 1 (batch mode) or N = B (pair and elem modes).

    lam         [N] float32  weight of an image's own label (after `correct_lam`); 1 = left alone
    use_cutmix  [N] bool     paste a box (True) or blend the whole image (False)
    box         [N, 4] int32 (y_low, y_high, x_low, x_high), half-open; (0, 0, 0, 0) where no box
    """

    lam: jax.Array
    use_cutmix: jax.Array
    box: jax.Array


def bbox_around(image_size: Sequence[int], lam: jax.Array, center_y: jax.Array, center_x: jax.Array) -> jax.Array:
    """timm's `rand_bbox` (margin 0) for a given centre: the [..., 4] box (y_low, y_high, x_low, x_high)."""
    height, width = image_size
    ratio = jnp.sqrt(1.0 - jnp.asarray(lam, jnp.float32))
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    y_low = jnp.clip(center_y - cut_h // 2, 0, height)
    y_high = jnp.clip(center_y + (cut_h + 1) // 2, 0, height)
    x_low = jnp.clip(center_x - cut_w // 2, 0, width)
    x_high = jnp.clip(center_x + (cut_w + 1) // 2, 0, width)
    return jnp.stack([y_low, y_high, x_low, x_high], axis=-1).astype(jnp.int32)


def rand_bbox(key: jax.Array, image_size: Sequence[int], lam: jax.Array) -> jax.Array:
    """timm's `rand_bbox`: a box of area about (1 - lam) H W around a uniform centre, clipped to the image."""
    height, width = image_size
    key_y, key_x = jax.random.split(key)
    center_y = jax.random.randint(key_y, jnp.shape(lam), 0, height)
    center_x = jax.random.randint(key_x, jnp.shape(lam), 0, width)
    return bbox_around(image_size, lam, center_y, center_x)


def rand_bbox_minmax(key: jax.Array, image_size: Sequence[int], minmax: Sequence[float], count: int) -> jax.Array:
    """timm's `rand_bbox_minmax`: sides uniform in [int(size * lo), int(size * hi)), the box inside the image."""
    height, width = image_size
    low, high = minmax
    key_h, key_w, key_y, key_x = jax.random.split(key, 4)
    cut_h = jax.random.randint(key_h, (count,), int(height * low), int(height * high))
    cut_w = jax.random.randint(key_w, (count,), int(width * low), int(width * high))
    y_low = jax.random.randint(key_y, (count,), 0, height - cut_h + 1)
    x_low = jax.random.randint(key_x, (count,), 0, width - cut_w + 1)
    return jnp.stack([y_low, y_low + cut_h, x_low, x_low + cut_w], axis=-1).astype(jnp.int32)


def box_lam(image_size: Sequence[int], box: jax.Array) -> jax.Array:
    """The lam of a cutmix box, 1 - box area / image area (timm's `cutmix_bbox_and_lam` correction)."""
    height, width = image_size
    area = (box[..., 1] - box[..., 0]) * (box[..., 3] - box[..., 2])
    return 1.0 - area.astype(jnp.float32) / float(height * width)


def mixup_target(labels: jax.Array, num_classes: int, lam: jax.Array, smoothing: float = 0.0) -> jax.Array:
    """timm's `mixup_target`: lam * smooth(labels) + (1 - lam) * smooth(labels flipped); lam [1] or [B]."""
    # timm's one_hot(on_value=1 - s + s / K, off_value=s / K) is optax's smooth_labels of the one-hot.
    y1 = optax.smooth_labels(jax.nn.one_hot(labels, num_classes, dtype=jnp.float32), smoothing)
    lam = jnp.asarray(lam, jnp.float32).reshape(-1, 1)
    return y1 * lam + jnp.flip(y1, 0) * (1.0 - lam)


def check_mixup_options(
    *, mixup_alpha, cutmix_alpha, cutmix_minmax, prob, switch_prob, mode, correct_lam, where: str = "Mixup"
) -> None:
    """Raises a one-line ValueError naming the first bad option as `<where>.<option>` and what is valid."""

    def is_number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if not is_number(value) or value < 0:
            raise ValueError(f"{where}.{name} must be a number >= 0 (0 turns it off); got {value!r}.")
    for name, value in (("prob", prob), ("switch_prob", switch_prob)):
        if not is_number(value) or not 0 <= value <= 1:
            raise ValueError(f"{where}.{name} must be a probability in [0, 1]; got {value!r}.")
    if mode not in MODES:
        raise ValueError(f"{where}.mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}.")
    if not isinstance(correct_lam, bool):
        raise ValueError(f"{where}.correct_lam must be true or false; got {correct_lam!r}.")
    if cutmix_minmax is not None:
        ok = (
            isinstance(cutmix_minmax, (tuple, list))
            and len(cutmix_minmax) == 2
            and all(map(is_number, cutmix_minmax))
            and 0 <= cutmix_minmax[0] < cutmix_minmax[1] <= 1
        )
        if not ok:
            raise ValueError(
                f"{where}.cutmix_minmax must be None or two box-side fractions (lo, hi) with 0 <= lo < hi <= 1, "
                f"e.g. (0.2, 0.8); got {cutmix_minmax!r}."
            )


@dataclasses.dataclass(frozen=True)
class Mixup:
    """timm's `Mixup` (timm/data/mixup.py) on JAX arrays: `mixup(key, images, labels) -> (images, targets)`.

    Options are timm's, with timm's defaults; see the module docstring. At least one of mixup_alpha > 0,
    cutmix_alpha > 0 or cutmix_minmax must be given (timm asserts this when it draws). The batch must be
    even, as timm's `Mixup.__call__` asserts.
    """

    num_classes: int
    mixup_alpha: float = 1.0
    cutmix_alpha: float = 0.0
    cutmix_minmax: tuple[float, float] | None = None
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: str = "batch"
    correct_lam: bool = True
    label_smoothing: float = 0.1

    def __post_init__(self):
        check_mixup_options(
            mixup_alpha=self.mixup_alpha,
            cutmix_alpha=self.cutmix_alpha,
            cutmix_minmax=self.cutmix_minmax,
            prob=self.prob,
            switch_prob=self.switch_prob,
            mode=self.mode,
            correct_lam=self.correct_lam,
        )
        if self.cutmix_minmax is not None:
            object.__setattr__(self, "cutmix_minmax", tuple(float(v) for v in self.cutmix_minmax))
            object.__setattr__(self, "cutmix_alpha", 1.0)  # as timm: minmax boxes, lam ~ Beta(1, 1)
        if not (self.mixup_alpha > 0 or self.cutmix_alpha > 0):
            raise ValueError(
                "Mixup mixes nothing: give mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax "
                f"(got mixup_alpha={self.mixup_alpha!r}, cutmix_alpha={self.cutmix_alpha!r})."
            )

    # ------------------------------------------------------------------------------------------- drawing

    def draw(self, key: jax.Array, batch_size: int, image_size: Sequence[int]) -> MixChoices:
        """The random choices of one batch: N = 1 draw (batch mode), B // 2 mirrored to B (pair), B (elem)."""
        check_even_batch(batch_size)
        count = {"batch": 1, "pair": batch_size // 2, "elem": batch_size}[self.mode]
        key_apply, key_switch, key_mixup, key_cutmix, key_box = jax.random.split(key, 5)
        applied = jax.random.uniform(key_apply, (count,)) < self.prob
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = jax.random.uniform(key_switch, (count,)) < self.switch_prob
            lam = jnp.where(
                use_cutmix,
                jax.random.beta(key_cutmix, self.cutmix_alpha, self.cutmix_alpha, (count,)),
                jax.random.beta(key_mixup, self.mixup_alpha, self.mixup_alpha, (count,)),
            )
        elif self.mixup_alpha > 0:
            use_cutmix = jnp.zeros((count,), bool)
            lam = jax.random.beta(key_mixup, self.mixup_alpha, self.mixup_alpha, (count,))
        else:
            use_cutmix = jnp.ones((count,), bool)
            lam = jax.random.beta(key_cutmix, self.cutmix_alpha, self.cutmix_alpha, (count,))
        lam = lam.astype(jnp.float32)
        if self.cutmix_alpha > 0:
            if self.cutmix_minmax is not None:
                box = rand_bbox_minmax(key_box, image_size, self.cutmix_minmax, count)
            else:
                box = rand_bbox(key_box, image_size, lam)
            if self.correct_lam or self.cutmix_minmax is not None:
                lam = jnp.where(use_cutmix, box_lam(image_size, box), lam)
        else:
            box = jnp.zeros((count, 4), jnp.int32)
        use_cutmix = use_cutmix & applied
        choices = MixChoices(
            lam=jnp.where(applied, lam, 1.0),
            use_cutmix=use_cutmix,
            box=jnp.where(use_cutmix[:, None], box, 0).astype(jnp.int32),
        )
        if self.mode == "pair":  # image B-1-i shares the draw of image i (timm's `_mix_pair`)
            choices = jax.tree.map(lambda a: jnp.concatenate([a, jnp.flip(a, 0)]), choices)
        return choices

    # ------------------------------------------------------------------------------------------- mixing

    def apply(self, images: jax.Array, labels: jax.Array, choices: MixChoices) -> tuple[jax.Array, jax.Array]:
        """Mixes images [B, H, W, C] (NHWC) with their mirror; -> (mixed images, soft targets [B, num_classes])."""
        batch, height, width = images.shape[:3]
        check_even_batch(batch)
        count = choices.lam.shape[0]
        if count not in (1, batch):
            raise ValueError(f"MixChoices hold {count} draws; a batch of {batch} takes 1 or {batch}.")
        flipped = jnp.flip(images, 0)
        lam = choices.lam.astype(images.dtype).reshape(count, 1, 1, 1)
        blended = images * lam + flipped * (1 - lam)
        rows = jax.lax.broadcasted_iota(jnp.int32, (1, height, width, 1), 1)
        cols = jax.lax.broadcasted_iota(jnp.int32, (1, height, width, 1), 2)
        y_low, y_high, x_low, x_high = (choices.box[:, i].reshape(count, 1, 1, 1) for i in range(4))
        inside = (rows >= y_low) & (rows < y_high) & (cols >= x_low) & (cols < x_high)
        pasted = jnp.where(inside, flipped, images)
        mixed = jnp.where(choices.use_cutmix.reshape(count, 1, 1, 1), pasted, blended)
        targets = mixup_target(labels, self.num_classes, choices.lam, self.label_smoothing)
        return mixed, targets

    def __call__(self, key: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`apply(images, labels, draw(key, ...))`: one random mix of a batch of images [B, H, W, C]."""
        return self.apply(images, labels, self.draw(key, images.shape[0], images.shape[1:3]))


def check_even_batch(batch_size: int) -> None:
    """timm's `Mixup.__call__` asserts an even batch: each image is mixed with its mirror B-1-i."""
    if batch_size % 2:
        raise ValueError(
            f"Mixup and CutMix need an even batch size (each image is mixed with its mirror, as in timm); "
            f"got {batch_size}."
        )
