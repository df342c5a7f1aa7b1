"""LARP's learned autoregressive prior: a small causal GPT on the tokenizer's codes, trained beside the tokenizer.

Official code: hywang66/LARP @ 8aaed63: models/gptc.py (`GPTC`, `GPTCConfig`, `CausalSelfAttention`, `Block`,
`GPTC_S` = "gptc-S": 12 layers, 6 heads, width 384, `max_seq_len` 1024, `n_ind` 16), and the prior loss in
models/larp_tokenizer.py (`calculate_prior_loss_with_pred`, `prior_ar_predict_n_rounds_ss`,
`logits_to_token_embedding_with_ss`, `calculate_logits_and_ar_pred_cont`), configured by cfgs/larp_tokenizer.yaml
(`prior_model`: gptc-S, `use_mix_ss: true`, `mix_ss_max_ratio: 0.5`, `mix_ss_peak_steps_ratio: 0.3`, `n_rounds: 2`,
`avg_loss_over_rounds: true`, `no_grad_before_last_round: false`, `latent_ce_temperature: 1.0`;
`loss_latent_ce_weight: 0.06` in the trainer, trainers/larp_tokenizer_trainer.py).

The model (`LARPPrior.__call__`, the official `ar_predict`), on the tokenizer's unit-norm codes x [B, n, 16]:

    h = Dropout(input_proj(x[:, :-1]) + pos_emb[:n-1]);  h = Blocks(h);  pred = head(ln_f(h))    [B, n-1, 16]
    out = normalize([x[:, :1], pred])                                                             [B, n, 16]

Blocks are GPT-2 style: h += proj(causal softmax attention(LN1(h))) (separate key / query / value Linears
with biases); h += Dropout(Linear(GELU(Linear(LN2(h))))), LayerNorm eps 1e-5, 4x MLP, exact GELU; attention
through mixtok.layers.attention (`dot_product_attention` with a causal mask).

The prior loss (`LARPPrior.prior_loss`), with E the tokenizer's L2-normalised codebook (stop-gradient) and
labels = indices[:, 1:]:

    round 1:  logits_1 = out(x)[:, 1:] . E^T / latent_ce_temperature                              [B, n-1, K]
    round 2:  x' = [x[:, :1], where(mask, E[s], x[:, 1:])], s ~ Categorical(softmax(logits_1)),
              mask ~ Bernoulli(ratio) per token; logits_2 = out(x')[:, 1:] . E^T / temperature
    loss = mean over rounds, batch and positions of cross_entropy(logits_r, labels)

scheduled sampling ratio (`scheduled_sampling_ratio`) = min(progress / peak * max_ratio, max_ratio), progress =
global_step / max_steps (peak 0.3, max_ratio 0.5); one mask per step is shared by the rounds, as officially.
Gradients reach the prior and, through x (the tokenizer's straight-through codes), the encoder; not the
codebook (the official `get_emb()` detaches it). The tokenizer's total loss adds 0.06 * this loss.

Randomness: dropout (embedding, residual and attention, 0.1 each in gptc-S) from the `dropout` stream when
`train=True`; the scheduled-sampling mask and the sampled codes from the `noise` stream, also only when
`train=True`. With `train=False` there is no dropout and no sampling: every round sees x (teacher forcing).

Differences from the official code:
- the official `CausalSelfAttention` passes `dropout_p=attn_pdrop` to `F.scaled_dot_product_attention` in eval
  mode too; here attention dropout acts in training only, like the other dropouts.
- the official prior samples the scheduled-sampling mask and codes in eval as well (the trainer's eval step
  runs the same forward); here eval is teacher-forced (identical rounds).
- initialisation: the official GPTC inits Linear weights N(0, 0.02), but LARPTokenizer.initialize_weights
  then re-initialises every nn.Linear of the tokenizer, the prior included, with xavier_uniform and zero
  bias; that (the state the prior trains from) is what this module draws. `pos_emb` is N(0, 0.02^2).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.activations import get_activation
from mixtok.layers.attention import dot_product_attention
from mixtok.layers.init import XAVIER_UNIFORM_INIT
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.tokenizers.quantizers import normalize_last_axis

TORCH_LAYER_NORM_EPS = 1e-5
LATENT_CE_WEIGHT = 0.06  # cfgs/larp_tokenizer.yaml `loss_latent_ce_weight`: the trainer's weight of prior_loss

# name: (layers, heads, width), models/gptc.py
GPTC_SIZES = {
    "gptc-L": (24, 16, 1024),
    "gptc-B": (12, 12, 768),
    "gptc-M": (12, 8, 512),
    "gptc-S": (12, 6, 384),
    "gptc-XS": (6, 6, 384),
    "gptc-XXS": (6, 4, 256),
}


def scheduled_sampling_ratio(progress, max_ratio: float = 0.5, peak: float = 0.3):
    """LARP's mixed scheduled-sampling ratio at `progress` = global_step / max_steps: rises linearly from 0 to
    `max_ratio` at `progress` = `peak`, then stays there (official `prior_ar_predict_n_rounds_ss`)."""
    progress = jnp.asarray(progress, jnp.float32)
    return jnp.minimum(progress / np.float32(peak) * np.float32(max_ratio), np.float32(max_ratio))


def _xavier_dense(features: int, axes, name: str | None = None, **kwargs):
    return dense(features, axes, kernel_init=param_with_axes(XAVIER_UNIFORM_INIT, axes), name=name, **kwargs)


class CausalSelfAttention(Module):
    """GPT's masked self-attention with separate `key`, `query`, `value` Linears (biases) and `proj`."""

    num_heads: int
    attn_dropout: float = 0.0
    proj_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        batch, length, width = x.shape
        heads = self.num_heads
        split = {"key": None, "query": None, "value": None}
        for name in split:
            split[name] = _xavier_dense(width, ("embed", "heads"), name, **self.dtype_kwargs)(x).reshape(
                batch, length, heads, width // heads
            )
        causal = jnp.tril(jnp.ones((length, length), bool))
        rng = self.make_rng("dropout") if train and self.attn_dropout > 0 else None
        out = dot_product_attention(
            split["query"],
            split["key"],
            split["value"],
            mask=causal[None, None],
            dropout_rate=self.attn_dropout,
            dropout_rng=rng,
        )
        out = _xavier_dense(width, ("heads", "embed"), "proj", **self.dtype_kwargs)(out.reshape(batch, length, width))
        return nn.Dropout(self.proj_dropout, deterministic=not train)(out)


class GPTBlock(Module):
    """h += attn(ln1(h)); h += Dropout(fc2(GELU(fc1(ln2(h))))) (official gptc `Block`, mlp.0 / mlp.2)."""

    num_heads: int
    dropout: float = 0.0
    attn_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        norm = dict(epsilon=TORCH_LAYER_NORM_EPS, **self.dtype_kwargs)
        x = x + CausalSelfAttention(self.num_heads, self.attn_dropout, self.dropout, **self.dtype_kwargs, name="attn")(
            LayerNorm(**norm, name="ln1")(x), train=train
        )
        width = x.shape[-1]
        y = LayerNorm(**norm, name="ln2")(x)
        y = _xavier_dense(4 * width, ("embed", "mlp"), "fc1", **self.dtype_kwargs)(y)
        y = get_activation("gelu")(y)
        y = _xavier_dense(width, ("mlp", "embed"), "fc2", **self.dtype_kwargs)(y)
        return x + nn.Dropout(self.dropout, deterministic=not train)(y)


class LARPPrior(Module):
    """LARP's autoregressive prior (gptc; module docstring) and its scheduled-sampling cross-entropy loss.

    Defaults are gptc-S with LARP's prior settings (cfgs/larp_tokenizer.yaml).
    """

    code_dim: int = 16
    width: int = 384
    depth: int = 12
    num_heads: int = 6
    max_length: int = 1024
    dropout: float = 0.1  # embd_pdrop = resid_pdrop
    attn_dropout: float = 0.1
    rounds: int = 2
    average_over_rounds: bool = True
    scheduled_sampling: bool = True  # official use_mix_ss; False: every sampled code replaces the input (ratio 1)
    max_sampling_ratio: float = 0.5
    sampling_peak: float = 0.3
    latent_ce_temperature: float = 1.0

    def setup(self):
        if self.width % self.num_heads:
            raise ValueError(f"LARPPrior: width {self.width} must be a multiple of num_heads {self.num_heads}.")
        if self.rounds < 1:
            raise ValueError(f"LARPPrior: rounds must be >= 1, got {self.rounds}.")
        self.input_proj = _xavier_dense(self.width, (None, "embed"), **self.dtype_kwargs)
        self.pos_emb = self.param(
            "pos_emb",
            param_with_axes(jax.nn.initializers.normal(0.02), (None, None, "embed")),
            (1, self.max_length, self.width),
            self.param_dtype,
        )
        self.blocks = [
            GPTBlock(self.num_heads, self.dropout, self.attn_dropout, **self.dtype_kwargs) for _ in range(self.depth)
        ]
        self.ln_f = LayerNorm(epsilon=TORCH_LAYER_NORM_EPS, **self.dtype_kwargs)
        self.head = _xavier_dense(self.code_dim, ("embed", None), **self.dtype_kwargs)
        self.embedding_dropout = nn.Dropout(self.dropout)

    def __call__(self, latents, *, train: bool = False):
        """Teacher-forced next-code predictions (official `ar_predict`): [B, n, code_dim] unit vectors whose
        position i >= 1 predicts code i from codes < i; position 0 is latents[:, 0] (normalised)."""
        if latents.ndim != 3 or latents.shape[-1] != self.code_dim or not 2 <= latents.shape[1] <= self.max_length + 1:
            raise ValueError(
                f"LARPPrior takes codes [B, n, {self.code_dim}] with 2 <= n <= {self.max_length + 1}; "
                f"got {tuple(latents.shape)}."
            )
        inputs = latents[:, :-1]
        h = self.input_proj(inputs) + self.pos_emb[:, : inputs.shape[1]].astype(self.dtype or inputs.dtype)
        h = self.embedding_dropout(h, deterministic=not train)
        for block in self.blocks:
            h = block(h, train=train)
        predictions = self.head(self.ln_f(h))
        full = jnp.concatenate([latents[:, :1].astype(predictions.dtype), predictions], axis=1)
        return normalize_last_axis(full.astype(jnp.float32))

    def logits(self, latents, codebook, *, train: bool = False):
        """Cosine logits [B, n-1, K] of codes 1.. (official `calculate_logits_and_ar_pred_cont`)."""
        predictions = self(latents, train=train)[:, 1:]
        scores = jnp.einsum("bnd,kd->bnk", predictions, codebook, precision=jax.lax.Precision.HIGHEST)
        return scores / np.float32(self.latent_ce_temperature)

    def prior_loss(self, latents, indices, codebook, progress, *, train: bool = False):
        """(loss, stats): LARP's latent cross-entropy (module docstring) of the tokenizer's codes.

        latents: [B, n, code_dim] the tokenizer's quantized codes (QuantizerOutput.quantized, with its
          straight-through gradient); indices: [B, n] their ids (QuantizerOutput.indices); codebook: [K, code_dim]
          the L2-normalised codebook (the quantizer's `codebook()`; a stop-gradient is applied here); progress:
          global_step / max_steps, a float (traced is fine). stats: top-1 / top-5 accuracy of the first round
          and the scheduled-sampling ratio.
        """
        codebook = jax.lax.stop_gradient(codebook.astype(jnp.float32))
        latents = latents.astype(jnp.float32)
        labels = indices[:, 1:]
        batch, length = labels.shape
        if train:
            ratio = scheduled_sampling_ratio(progress, self.max_sampling_ratio, self.sampling_peak)
            if not self.scheduled_sampling:
                ratio = jnp.ones((), jnp.float32)
            mask = jax.random.uniform(self.make_rng("noise"), (batch, length, 1)) < ratio
        else:
            ratio = jnp.zeros((), jnp.float32)
            mask = jnp.zeros((batch, length, 1), bool)
        all_logits, inputs = [], latents
        for round_index in range(self.rounds):
            logits = self.logits(inputs, codebook, train=train)
            all_logits.append(logits)
            if round_index < self.rounds - 1:
                if train:
                    sampled = jax.random.categorical(self.make_rng("noise"), jax.lax.stop_gradient(logits), axis=-1)
                    replaced = jnp.where(mask, jnp.take(codebook, sampled, axis=0), latents[:, 1:])
                else:
                    replaced = latents[:, 1:]
                inputs = jnp.concatenate([latents[:, :1], replaced], axis=1)
        stacked = jnp.stack(all_logits if self.average_over_rounds else all_logits[-1:], axis=0)
        log_probs = jax.nn.log_softmax(stacked, axis=-1)
        picked = jnp.take_along_axis(log_probs, jnp.broadcast_to(labels, stacked.shape[:-1])[..., None], axis=-1)
        loss = -jnp.mean(picked)
        first = all_logits[0]
        top5 = jax.lax.top_k(first, min(5, first.shape[-1]))[1]
        stats = {
            "prior_top1_accuracy": jnp.mean((top5[..., 0] == labels).astype(jnp.float32)),
            "prior_top5_accuracy": jnp.mean(jnp.any(top5 == labels[..., None], axis=-1).astype(jnp.float32)),
            "scheduled_sampling_ratio": ratio,
        }
        return loss, jax.lax.stop_gradient(stats)


def prior_loss(prior: LARPPrior, variables, quantizer_output, codebook, progress, *, train: bool = False, rngs=None):
    """LARP's prior loss of a tokenizer's `QuantizerOutput` at training `progress` (global_step / max_steps):
    `prior.apply(variables, quantized, indices, codebook, progress, method="prior_loss")`; (loss, stats).
    The tokenizer's loss adds LATENT_CE_WEIGHT (0.06) times it. `rngs`: {"noise", "dropout"} when `train`."""
    return prior.apply(
        variables,
        quantizer_output.quantized,
        quantizer_output.indices,
        codebook,
        progress,
        train=train,
        rngs=rngs,
        method=LARPPrior.prior_loss,
    )


def prior_from_size(size: str = "gptc-S", **overrides) -> LARPPrior:
    """The LARPPrior of a named official gptc size (GPTC_SIZES), e.g. "gptc-S" (LARP's)."""
    if size not in GPTC_SIZES:
        raise ValueError(f"unknown gptc size {size!r}; valid: {', '.join(GPTC_SIZES)}.")
    depth, heads, width = GPTC_SIZES[size]
    return LARPPrior(**{"depth": depth, "num_heads": heads, "width": width, **overrides})
