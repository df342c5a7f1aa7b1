"""Image and video tokenizer training: reconstruction, quantizer, perceptual and GAN losses; PSNR, SSIM, codebook eval.

    config.task = "tokenizer"
    config.model.name = "titok_s128"          # a name from mixtok.tokenizers.list_tokenizers()
    config.loss = ConfigDict(dict(reconstruction="l2", perceptual_weight=0.1, gan_weight=0.1, gan_start_step=20_000))

The trainer is the classification one; this task says what a step optimises and what eval measures.

Variables. `params = {"tokenizer": ..., "discriminator": ...}` (the discriminator only when
`loss.gan_weight > 0`); the other collections are kept per module in `other_variables`:
`{"tokenizer": {"quantizer_state": ..., ...}, "discriminator": {"batch_stats": ...},
"perceptual": {"params": ...}, "lecam": {"real": ..., "fake": ...}}`. The perceptual network's
weights are never trained (they are not in `params`), and are checkpointed with the run.

One optimizer step trains the generator (tokenizer) and the discriminator together: the loss is
L_G(G, sg(D)) + L_D(sg(reconstruction), D), so each gets exactly its own gradient (the derivation is
in mixtok/tokenizers/losses.py), and `create_optimizer` gives each its own optax chain (own
learning rate, own gradient clipping) through `optax.multi_transform`, as TiTok's two optimizers.

Loss (all fields of `config.loss`, defaults in `LOSS_DEFAULTS`):
    reconstruction_weight * {l1, l2}(x, x_hat) + quantizer_weight * quantizer.loss
    + perceptual_weight * LPIPS-style distance over `perceptual_network` (needs your weights)
    + gan_weight * generator GAN loss            (from gan_start_step on)
    + discriminator GAN loss + lecam_weight * LeCam  (discriminator, from gan_start_step on)

`perceptual_network` is "small_feature_net" (a random-init STAND-IN, not a perceptual metric;
only for smoke tests) or "package.module:ClassName" of a linen module mapping [-1, 1] images to a
sequence of feature maps, whose weights `perceptual_weights` (a flax msgpack file of its
`{"params": ...}`) you supply: mixtok downloads nothing.

Videos. Batches of clips [B, T, H, W, C] (a video source, `DatasetInfo.num_frames` = T > 1; images mixed in by
`data.image_ratio` come as T = 1 clips) go to the tokenizer whole (OmniTokenizer takes both layouts); the model is
initialised with a [1, T, S, S, 3] clip. Every loss that compares pixels works per frame, time folded into the
batch ([B T, H, W, C]): L1 / L2 (a mean over every element, so the same either way), the perceptual distance and
the 2-D discriminator (real and reconstructed frames), as OmniTokenizer's image losses apply per frame
(FoundationVision/OmniTokenizer: OmniTokenizer/omnitokenizer.py `VQGAN.forward`, frames folded by
`rearrange(x, "b c t h w -> (b t) c h w")` for the perceptual and 2-D GAN terms). Eval: PSNR, SSIM and MSE are
per frame and averaged over the clip's frames (`mixtok.evaluate.frame_psnr` / `frame_ssim`), so eval/psnr is the
mean over clips of the per-frame mean, the per-frame averages OmniTokenizer and LARP report; clips of T >= 2 add
eval/temporal_psnr (`mixtok.evaluate.temporal_psnr`: PSNR of the frame differences). The PNG holds the first
NUM_EVAL_CLIPS clips, frames left to right, each clip's original frames on one row and its reconstruction on the
row below.

Eval: PSNR and SSIM on [0, 1] pixels (the data's mean / std, from `DatasetInfo`, undone, reconstructions clipped), the
mean squared error, and the codebook usage and perplexity over the whole eval set. Tokenizers with
prefix decoding are also evaluated at each `eval_num_tokens` k (eval/psnr_k{k}). The first eval
batch's originals and reconstructions are written side by side to `workdir/images/step_<N>.png`.
"""

import importlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from mixtok.data import DatasetInfo
from mixtok.evaluate import (
    frame_psnr,
    frame_ssim,
    perplexity_from_counts,
    psnr,
    ssim,
    temporal_psnr,
    usage_from_counts,
)
from mixtok.files import write_atomically
from mixtok.registry import unknown_name_error
from mixtok.tokenizers import create_tokenizer, losses
from mixtok.tokenizers.base import QUANTIZER_STATE
from mixtok.train import storage
from mixtok.train.optimizer import create_optimizer
from mixtok.train.tasks.base import Task, compute_dtype

log = logging.getLogger(__name__)

LOSS_DEFAULTS = dict(
    reconstruction="l2",
    reconstruction_weight=1.0,
    quantizer_weight=1.0,
    perceptual_weight=0.0,
    perceptual_network="small_feature_net",
    perceptual_kwargs={},
    perceptual_weights=None,
    gan_weight=0.0,
    gan_start_step=0,
    gan_loss="hinge",
    discriminator="titok",
    discriminator_kwargs={},
    lecam_weight=0.0,
    lecam_decay=0.999,
)
DISCRIMINATORS = {"titok": losses.TiTokDiscriminator, "patchgan": losses.PatchGANDiscriminator}
GAN_LOSSES = {
    "hinge": (losses.hinge_d_loss, losses.hinge_g_loss),
    "non_saturating": (losses.non_saturating_d_loss, losses.non_saturating_g_loss),
}
MAX_HISTOGRAM_CODES = 1 << 16  # eval keeps a code histogram up to this codebook size
NUM_EVAL_IMAGES = 8  # originals / reconstructions in the eval PNG
NUM_EVAL_CLIPS = 4  # clips in the eval PNG of a video run (two rows each)


def loss_options(config: ConfigDict) -> ConfigDict:
    """`config.loss` with every default filled in; unknown fields are an error naming the valid ones."""
    given = config.get("loss", ConfigDict()).to_dict()
    for key in given:
        if key not in LOSS_DEFAULTS:
            raise unknown_name_error("config.loss field", key, LOSS_DEFAULTS)
    options = ConfigDict({**LOSS_DEFAULTS, **given})
    if options.reconstruction not in losses.RECONSTRUCTION_KINDS:
        raise unknown_name_error("config.loss.reconstruction", options.reconstruction, losses.RECONSTRUCTION_KINDS)
    if options.gan_loss not in GAN_LOSSES:
        raise unknown_name_error("config.loss.gan_loss", options.gan_loss, GAN_LOSSES)
    if options.discriminator not in DISCRIMINATORS:
        raise unknown_name_error("config.loss.discriminator", options.discriminator, DISCRIMINATORS)
    for key in ("reconstruction_weight", "quantizer_weight", "perceptual_weight", "gan_weight", "lecam_weight"):
        if not isinstance(options[key], (int, float)) or options[key] < 0:
            raise ValueError(f"config.loss.{key} must be a number >= 0; got {options[key]!r}.")
    return options


def _feature_network(name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    if name == "small_feature_net":
        return losses.SmallFeatureNet(**kwargs)
    module_name, _, class_name = name.partition(":")
    if not class_name:
        raise ValueError(
            f"config.loss.perceptual_network={name!r} must be 'small_feature_net' or "
            "'package.module:ClassName' of a linen module that maps images to feature maps."
        )
    try:
        return getattr(importlib.import_module(module_name), class_name)(**kwargs)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"config.loss.perceptual_network={name!r} cannot be imported: {error}") from None


def frames(x):
    """Clips [B, T, H, W, C] -> frames [B T, H, W, C] (time folded into the batch); images pass unchanged."""
    return x.reshape((-1,) + tuple(x.shape[2:])) if x.ndim == 5 else x


class TokenizerTask(Task):
    """Loss and metrics for a tokenizer of images [B, H, W, 3] or clips [B, T, H, W, 3] (module docstring)."""

    CONFIG_FIELDS = ("loss", "discriminator_optimizer", "eval_num_tokens")
    UPDATED_COLLECTIONS = (QUANTIZER_STATE, "batch_stats")
    PROGRESS_METRICS = ("eval/psnr",)

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: ConfigDict,
        mean,
        std,
        eval_num_tokens=(),
        discriminator_optimizer: ConfigDict = None,
        optimizer: ConfigDict = None,
        total_steps: int = 1,
        num_frames: int = 1,
        dtype=jnp.float32,
    ):
        self.model = model
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames={num_frames!r} must be an int >= 1 (1: images, T > 1: clips of T frames).")
        self.num_frames = num_frames
        self.loss = loss
        self.mean = jnp.asarray(mean, jnp.float32)
        self.std = jnp.asarray(std, jnp.float32)
        self.optimizer_config = optimizer
        self.discriminator_optimizer_config = discriminator_optimizer or optimizer
        self.total_steps = total_steps
        self.discriminator = None
        if loss.gan_weight > 0:
            self.discriminator = DISCRIMINATORS[loss.discriminator](**dict(loss.discriminator_kwargs))
        self.perceptual_network = None
        if loss.perceptual_weight > 0:
            self.perceptual_network = _feature_network(loss.perceptual_network, dict(loss.perceptual_kwargs))
        self.codebook_size = _codebook_size(model)
        num_latent = getattr(model, "num_latent_tokens", None)
        self.eval_num_tokens = tuple(int(k) for k in eval_num_tokens)
        if self.eval_num_tokens and not getattr(model, "PREFIX_DECODING", False):
            raise ValueError(
                f"eval_num_tokens={self.eval_num_tokens} needs a tokenizer with prefix decoding; "
                f"{type(model).__name__} has none."
            )
        for k in self.eval_num_tokens:
            if num_latent is not None and not 1 <= k <= num_latent:
                raise ValueError(f"eval_num_tokens has k={k}; valid: 1..{num_latent} (the model's tokens).")

    @classmethod
    def validate(cls, config: ConfigDict) -> None:
        loss_options(config)
        eval_num_tokens = config.get("eval_num_tokens", ())
        if not isinstance(eval_num_tokens, (list, tuple)) or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in eval_num_tokens
        ):
            raise ValueError(
                f"config.eval_num_tokens must be a list of token counts k (ints); got {eval_num_tokens!r}."
            )

    @classmethod
    def build_model(cls, config: ConfigDict, info: DatasetInfo) -> nn.Module:
        """`create_tokenizer(config.model.name, **config.model.kwargs)`, checked against the data's image size."""
        model = create_tokenizer(
            config.model.name, dtype=compute_dtype(config), **config.model.get("kwargs", ConfigDict()).to_dict()
        )
        image_size = getattr(model, "image_size", None)
        if image_size is not None and image_size != info.image_size:
            raise ValueError(
                f"config.data.image_size={info.image_size} but {config.model.name} is built for "
                f"{image_size}-px images; set config.model.kwargs.image_size={info.image_size} or "
                f"data.image_size={image_size}."
            )
        return model

    @classmethod
    def from_config(cls, config: ConfigDict, info: DatasetInfo) -> "TokenizerTask":
        return cls(
            cls.build_model(config, info),
            loss=loss_options(config),
            mean=info.mean,
            std=info.std,
            eval_num_tokens=tuple(config.get("eval_num_tokens", ())),
            optimizer=config.optimizer,
            discriminator_optimizer=config.get("discriminator_optimizer", None),
            total_steps=config.total_steps,
            num_frames=info.num_frames,
        )

    # ------------------------------------------------------------------------------------------- set-up

    def create_optimizer(self, config: ConfigDict = None):
        """(optax transformation, tokenizer learning-rate schedule): one chain per parameter set.

        The optimizers are those the task was built with (`config.optimizer` and
        `config.discriminator_optimizer`), so `config` is not read again.
        """
        tx, schedule = create_optimizer(self.optimizer_config, self.total_steps)
        transforms = {"tokenizer": tx}
        if self.discriminator is not None:
            transforms["discriminator"], _ = create_optimizer(self.discriminator_optimizer_config, self.total_steps)
        return per_parameter_set(transforms), schedule

    def dummy_batch(self, image_size: int, batch_size: int = 1) -> dict[str, jax.Array]:
        """Zero images [b, S, S, 3], or clips [b, T, S, S, 3] when the data are clips of T = num_frames > 1."""
        if self.num_frames == 1:
            return super().dummy_batch(image_size, batch_size)
        shape = (batch_size, self.num_frames, image_size, image_size, 3)
        return {"image": jnp.zeros(shape, jnp.float32), "label": jnp.zeros((batch_size,), jnp.int32)}

    def init(self, rng: jax.Array, batch: Mapping[str, Any]):
        tok_rng, disc_rng, perc_rng = jax.random.split(rng, 3)
        tokenizer = dict(
            self.model.init({"params": tok_rng, "noise": tok_rng, "dropout": tok_rng}, batch["image"], train=False)
        )
        images = frames(batch["image"])  # the discriminator and perceptual network see frames
        params = {"tokenizer": tokenizer.pop("params")}
        other: dict[str, Any] = {"tokenizer": tokenizer}
        if self.discriminator is not None:
            disc = dict(self.discriminator.init(disc_rng, images, train=False))
            params["discriminator"] = disc.pop("params")
            other["discriminator"] = disc
            other["lecam"] = {"real": jnp.zeros((), jnp.float32), "fake": jnp.zeros((), jnp.float32)}
        if self.perceptual_network is not None:
            perceptual = nn.meta.unbox(self.perceptual_network.init(perc_rng, images))
            if self.loss.perceptual_weights is not None:
                perceptual = _load_weights(self.loss.perceptual_weights, perceptual)
            else:
                log.warning(
                    "config.loss.perceptual_weights is None: the perceptual loss uses randomly initialised "
                    "%s features, a stand-in, not a perceptual metric.",
                    self.loss.perceptual_network,
                )
            other["perceptual"] = {"params": perceptual["params"]}
        return {"params": params, **other}

    @staticmethod
    def model_variables(params, other_variables):
        """The tokenizer's own variables: the discriminator and perceptual network are the loss's."""
        return {"params": params["tokenizer"], **other_variables["tokenizer"]}

    # ------------------------------------------------------------------------------------------- training

    def _pixels(self, x):
        """Normalised images -> [0, 1] pixels."""
        return x.astype(jnp.float32) * self.std + self.mean

    def train_loss(self, params, other_variables, batch, rng, step=0):
        """The combined generator + discriminator loss; returns (loss, (metrics, updated collections))."""
        dropout_rng, drop_path_rng, noise_rng = jax.random.split(rng, 3)
        images = batch["image"].astype(jnp.float32)
        tok_state = other_variables["tokenizer"]
        mutable = [name for name in self.UPDATED_COLLECTIONS if name in tok_state]
        out, tok_updated = self.model.apply(
            {"params": params["tokenizer"], **tok_state},
            images,
            train=True,
            mutable=mutable,
            rngs={"dropout": dropout_rng, "drop_path": drop_path_rng, "noise": noise_rng},
        )
        # Pixel losses per frame: clips [B, T, H, W, C] are folded to frames [B T, H, W, C] (module docstring).
        images, recon = frames(images), frames(out.reconstruction.astype(jnp.float32))
        loss = self.loss
        rec = losses.reconstruction_loss(images, recon, loss.reconstruction)
        total = loss.reconstruction_weight * rec + loss.quantizer_weight * out.quantizer.loss
        metrics = {
            "reconstruction_loss": rec,
            "quantizer_loss": out.quantizer.loss,
            "psnr": jnp.mean(psnr(self._pixels(images), jnp.clip(self._pixels(recon), 0.0, 1.0))),
            **{f"quantizer/{k}": v for k, v in out.quantizer.stats.items()},
        }
        updated = {"tokenizer": {**tok_state, **tok_updated}}
        if self.perceptual_network is not None:
            network_vars = other_variables["perceptual"]
            perceptual = losses.PerceptualLoss(lambda x: self.perceptual_network.apply(network_vars, x))(images, recon)
            total = total + loss.perceptual_weight * perceptual
            metrics["perceptual_loss"] = perceptual
        if self.discriminator is not None:
            d_loss_fn, g_loss_fn = GAN_LOSSES[loss.gan_loss]
            disc_state = other_variables["discriminator"]
            disc_mutable = [name for name in ("batch_stats",) if name in disc_state]
            on = losses.gan_weight_at(step, loss.gan_start_step, 1.0)
            # Generator: the discriminator's weights are constants (its statistics from this pass are dropped).
            fake_for_g, _ = self.discriminator.apply(
                {"params": jax.lax.stop_gradient(params["discriminator"]), **disc_state},
                recon,
                train=True,
                mutable=disc_mutable,
            )
            g_loss = g_loss_fn(fake_for_g)
            total = total + on * loss.gan_weight * g_loss
            # Discriminator: real images, then the reconstructions as constants (two passes, as TiTok).
            real, state1 = self.discriminator.apply(
                {"params": params["discriminator"], **disc_state}, images, train=True, mutable=disc_mutable
            )
            state1 = {**disc_state, **state1}
            fake, state2 = self.discriminator.apply(
                {"params": params["discriminator"], **state1},
                jax.lax.stop_gradient(recon),
                train=True,
                mutable=disc_mutable,
            )
            d_loss = d_loss_fn(real, fake)
            lecam = other_variables["lecam"]
            if loss.lecam_weight > 0:
                reg = losses.lecam_regularization(real, fake, lecam["real"], lecam["fake"])
                d_loss = d_loss + loss.lecam_weight * reg
                metrics["lecam_loss"] = reg
            total = total + on * d_loss
            # Before gan_start_step the discriminator does not step: keep its statistics and LeCam EMAs.
            keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(on > 0, a, b), new, old)  # noqa
            new_lecam = {
                "real": losses.update_lecam_ema(lecam["real"], real, loss.lecam_decay),
                "fake": losses.update_lecam_ema(lecam["fake"], fake, loss.lecam_decay),
            }
            updated["discriminator"] = keep({**state1, **state2}, disc_state)
            updated["lecam"] = keep(new_lecam, lecam)
            metrics.update(
                {
                    "generator_gan_loss": g_loss,
                    "discriminator_loss": d_loss,
                    "logits_real": jnp.mean(real),
                    "logits_fake": jnp.mean(fake),
                }
            )
        return total, (metrics, updated)

    # ------------------------------------------------------------------------------------------- evaluation

    def _reconstruct(self, params, other_variables, images, num_tokens=None):
        variables = self.model_variables(params, other_variables)
        kwargs = {} if num_tokens is None else {"num_tokens": num_tokens}
        return self.model.apply(variables, images, train=False, **kwargs)

    def eval_sums(self, params, other_variables, batch) -> dict[str, jax.Array]:
        """Sums over the real (mask == 1) images or clips of a padded eval batch (a clip: its frames' mean)."""
        images = batch["image"].astype(jnp.float32)
        mask = batch["mask"].astype(jnp.float32)
        out = self._reconstruct(params, other_variables, images)
        x = self._pixels(images)
        y = jnp.clip(self._pixels(out.reconstruction), 0.0, 1.0)
        if images.ndim == 5:
            per_example = {
                "psnr": jnp.mean(frame_psnr(x, y), axis=1),
                "ssim": jnp.mean(frame_ssim(x, y), axis=1),
                "mse": jnp.mean(jnp.square(x - y), axis=(1, 2, 3, 4)),
            }
            if images.shape[1] >= 2:
                per_example["temporal_psnr"] = temporal_psnr(x, y)
        else:
            per_example = {"psnr": psnr(x, y), "ssim": ssim(x, y), "mse": jnp.mean(jnp.square(x - y), axis=(1, 2, 3))}
        sums = {key: jnp.sum(value * mask) for key, value in per_example.items()}
        sums["count"] = jnp.sum(mask)
        codebook_size = self.codebook_size
        if out.quantizer.indices is not None and codebook_size and codebook_size <= MAX_HISTOGRAM_CODES:
            # A residual quantizer's [B, ..., depth] indices count every level's codes together.
            indices = out.quantizer.indices.reshape(images.shape[0], -1)
            weights = jnp.broadcast_to(mask[:, None], indices.shape)
            sums["code_counts"] = (
                jnp.zeros((codebook_size,), jnp.float32).at[indices.reshape(-1)].add(weights.reshape(-1))
            )
        for k in self.eval_num_tokens:
            y_k = jnp.clip(self._pixels(self._reconstruct(params, other_variables, images, k).reconstruction), 0, 1)
            value = jnp.mean(frame_psnr(x, y_k), axis=1) if images.ndim == 5 else psnr(x, y_k)
            sums[f"psnr_k{k}"] = jnp.sum(value * mask)
        return sums

    def summarize_eval(self, sums: Mapping[str, Any]) -> dict[str, float]:
        count = max(float(sums["count"]), 1.0)
        out = {
            f"eval/{key}": float(value) / count for key, value in sums.items() if key not in ("count", "code_counts")
        }
        if "code_counts" in sums:
            out["eval/codebook_usage"] = float(usage_from_counts(sums["code_counts"]))
            out["eval/perplexity"] = float(perplexity_from_counts(sums["code_counts"]))
        return out

    def eval_images(self, params, other_variables, batch) -> dict[str, jax.Array]:
        """The first NUM_EVAL_IMAGES originals and reconstructions (NUM_EVAL_CLIPS of clips) as [0, 1] pixels."""
        count = NUM_EVAL_CLIPS if batch["image"].ndim == 5 else NUM_EVAL_IMAGES
        images = batch["image"][:count].astype(jnp.float32)
        out = self._reconstruct(params, other_variables, images)
        return {
            "original": jnp.clip(self._pixels(images), 0.0, 1.0),
            "reconstruction": jnp.clip(self._pixels(out.reconstruction), 0.0, 1.0),
        }

    def write_eval_images(self, images: Mapping[str, np.ndarray], directory: Path, step: int) -> Path:
        """Writes step_<N>.png: images, originals (left) beside reconstructions (right), one pair per row; clips,
        a strip per clip, its original frames left to right on one row and their reconstructions on the next."""
        path = storage.as_path(directory) / f"step_{step:07d}.png"
        original, reconstruction = np.asarray(images["original"]), np.asarray(images["reconstruction"])
        if original.ndim == 5:
            write_png(image_grid(list(clip_rows(original, reconstruction).swapaxes(0, 1))), path)
        else:
            write_png(image_grid([original, reconstruction]), path)
        return path


def per_parameter_set(transforms: Mapping[str, optax.GradientTransformation]) -> optax.GradientTransformation:
    """Applies transforms[name] to params[name] for each top-level parameter set, each with its own state.

    What optax.multi_transform does for top-level groups, without its masked copies of the whole tree
    (whose MaskedNode leaves the sharded train state's abstract tree cannot carry).
    """

    def init(params):
        return {name: tx.init(params[name]) for name, tx in transforms.items()}

    def update(updates, state, params=None):
        new_updates, new_state = {}, {}
        for name, tx in transforms.items():
            new_updates[name], new_state[name] = tx.update(
                updates[name], state[name], None if params is None else params[name]
            )
        return new_updates, new_state

    return optax.GradientTransformation(init, update)


def _codebook_size(model):
    quantizer = getattr(model, "quantizer", None)
    if isinstance(quantizer, Mapping):
        from mixtok.tokenizers.quantizers import make_quantizer

        return make_quantizer(**dict(quantizer)).codebook_size
    return None


def _load_weights(path: str, target: Mapping[str, Any]) -> dict[str, Any]:
    """A flax msgpack file of `{"params": ...}` with exactly `target`'s structure and shapes."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config.loss.perceptual_weights: no file {path!r}.")
    with open(path, "rb") as f:
        restored = flax.serialization.msgpack_restore(f.read())
    want = jax.tree_util.tree_map(np.shape, dict(target))
    got = jax.tree_util.tree_map(np.shape, restored)
    if want != got:
        raise ValueError(
            f"config.loss.perceptual_weights {path!r} does not fit the network: its arrays have shapes "
            f"{got}, the network needs {want}."
        )
    return restored


def clip_rows(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Clips [n, T, H, W, C] x 2 -> [2 n, T, H, W, C]: clip i's original frames (row 2 i), then its reconstruction."""
    return np.stack([original, reconstruction], axis=1).reshape((-1,) + original.shape[1:])


def image_grid(columns, padding: int = 2) -> np.ndarray:
    """uint8 [rows * (h + p) + p, cols * (w + p) + p, 3]: column c holds columns[c]'s images top to bottom."""
    columns = [np.clip(np.asarray(c, np.float32), 0.0, 1.0) for c in columns]
    rows, h, w, _ = columns[0].shape
    grid = np.ones((rows * (h + padding) + padding, len(columns) * (w + padding) + padding, 3), np.float32)
    for c, images in enumerate(columns):
        for r in range(rows):
            top, left = padding + r * (h + padding), padding + c * (w + padding)
            grid[top : top + h, left : left + w] = images[r]
    return np.rint(grid * 255.0).astype(np.uint8)


def write_png(image: np.ndarray, path) -> None:
    """Writes an RGB uint8 image atomically (replacing an earlier image of the same step); `path` is a local
    path or a gs:// one (`mixtok.train.storage`), where the image is one upload."""
    import io

    from PIL import Image

    path = storage.as_path(path)
    if not isinstance(path, Path):
        data = io.BytesIO()
        Image.fromarray(image, "RGB").save(data, format="PNG")
        storage.write_bytes_atomically(path, data.getvalue())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: Image.fromarray(image, "RGB").save(tmp, format="PNG"), overwrite=True)
