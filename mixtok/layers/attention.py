"""Softmax attention, one function for every mixer and tokenizer: softmax(q k^T * scale + bias [masked]) v.

`dot_product_attention(q, k, v, *, bias, mask, scale, impl)` takes jax.nn's layout, q [B, T, heads, d],
k [B, S, kv_heads, d], v [B, S, kv_heads, dv] (heads a multiple of kv_heads: grouped-query attention), and
returns [B, T, heads, dv]. `bias` (added to the scaled logits) and `mask` (bool, True = may attend) broadcast
to [B, heads, T, S]. The softmax runs in float32 whatever the compute dtype, as jax.nn's XLA path does (its
logits are float32 too: `preferred_element_type` float32 for half-precision q, k); the weights are cast to
v's dtype before they meet v. Masked logits are set to -0.7 * float32 max (jax.nn's value), so a row
with every key masked gets uniform weights instead of NaN.

Implementations (`impl`), each computing the same function:

- "reference": the explicit einsum form (float32 logits and softmax). The only one with attention-weight
  dropout (`dropout_rate` with a `dropout_rng`), and the only one taking dv != d natively.
- "xla": `jax.nn.dot_product_attention(implementation="xla")`, the same maths as one XLA graph.
- "cudnn": `jax.nn.dot_product_attention(implementation="cudnn")`, cuDNN's fused flash attention, GPU only.
  What jax (0.10, 0.11) checks, checked here first so the error names the value: q, k, v float16 / bfloat16
  of one dtype; head width a multiple of 8 and at most 128 (256 on Hopper, compute capability >= 9.0);
  with a bias or mask (cuDNN adds both as one bias in q's dtype) T and S even, which its backward needs.
- "pallas": TPU flash attention (`jax.experimental.pallas.ops.tpu.flash_attention`, [B, heads, T, d]),
  TPU only. Its default 128-blocks need T and S multiples of 128 and a head width <= 128 or a multiple of
  128; bias and mask enter as one float32 bias of shape [B, heads, T, S] (the kernel's `ab`).
- "auto": "reference" while dropout is active or when dv != d; else "cudnn" on a GPU where its checks pass
  (and XLA if cuDNN still refuses the call while it is traced: an old cuDNN or GPU), "pallas" on a TPU
  where the shapes fit, "xla" otherwise.

Where dv != d, "xla", "cudnn" and "pallas" (which need one width) zero-pad the narrower side: zero channels
add nothing to q . k, and zero value channels give zero outputs, which are cut off; exact, at the cost of
the padded FLOPs. `platform` names the platform a call is lowered for ("cpu", "gpu", "tpu"; default
`jax.default_backend()`), so a TPU program can be exported (`jax.export(..., platforms=["tpu"])`) on a CPU.

`MultiHeadAttention` is the projection module around it for plain multi-head self-attention: a fused qkv
projection, this function, an output projection (CAFormer's `Attention`, DaViT's global / window / channel
attention and TiTok's transformer use it, each keeping its parameter names).
"""

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.init import dense_kernel_init
from mixtok.layers.linear import Dense, dense
from mixtok.layers.module import Module, check_channels
from mixtok.layers.partitioning import constrain, constrain_channels_last, zeros_with_axes

IMPLEMENTATIONS = ("auto", "reference", "xla", "cudnn", "pallas")
CUDNN_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
CUDNN_MAX_HEAD_DIM = 128  # before Hopper; 256 from compute capability 9.0 (jax's check_is_flash_attention)
CUDNN_MAX_HEAD_DIM_HOPPER = 256
PALLAS_BLOCK = 128  # the TPU kernel's default block_q / block_k (its BlockSizes.get_default)
MASKED_LOGIT = -0.7 * float(np.finfo(np.float32).max)  # jax.nn's large negative, finite in float32


def dot_product_attention(
    query,
    key,
    value,
    *,
    bias=None,
    mask=None,
    scale: float | None = None,
    impl: str = "auto",
    dropout_rate: float = 0.0,
    dropout_rng=None,
    platform: str | None = None,
):
    """Multi-head softmax attention over [B, T, heads, d] arrays by the implementation `impl` names.

    `scale` defaults to d ** -0.5. Attention-weight dropout is active when `dropout_rate > 0` and a
    `dropout_rng` is given (pass the rng only in training); weights are zeroed with probability
    `dropout_rate` and the rest divided by 1 - rate, as flax's `nn.Dropout` does.
    """
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    _check_arrays(query, key, value)
    batch, q_len, heads, _ = query.shape
    full_shape = (batch, heads, q_len, key.shape[1])
    bias = None if bias is None else _check_broadcast("bias", jnp.asarray(bias), full_shape)
    if mask is not None:
        mask = _check_broadcast("mask", jnp.asarray(mask), full_shape)
        if mask.dtype != jnp.bool_:
            raise ValueError(
                f"mask must be boolean (True = may attend); got dtype {mask.dtype}. Pass an additive mask as `bias`."
            )
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl {impl!r} is not one of {IMPLEMENTATIONS}.")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must lie in [0, 1); got {dropout_rate}.")
    scale = float(query.shape[-1] ** -0.5 if scale is None else scale)
    platform = _normalise_platform(platform or jax.default_backend())
    dropout_active = dropout_rate > 0.0 and dropout_rng is not None

    if impl == "auto":
        impl = _auto_impl(query, key, value, bias, mask, dropout_active, platform)
        if impl == "cudnn":
            try:
                return _padded_call(_cudnn_attention, query, key, value, bias, mask, scale)
            except (NotImplementedError, RuntimeError):
                impl = "xla"  # cuDNN missing, too old, or refusing this GPU: XLA computes the same thing
    elif dropout_active and impl != "reference":
        raise ValueError(
            f"impl {impl!r} has no attention-weight dropout (rate {dropout_rate}); use impl='reference' "
            f"or 'auto' (which picks it while dropout is active)."
        )
    if impl == "reference":
        return reference_attention(
            query,
            key,
            value,
            bias=bias,
            mask=mask,
            scale=scale,
            dropout_rate=dropout_rate if dropout_active else 0.0,
            dropout_rng=dropout_rng,
        )
    if impl == "cudnn":
        error = cudnn_unsupported(query, key, value, bias, mask, platform)
        if error:
            raise ValueError(f"impl='cudnn': {error}. impl='auto' falls back to XLA where cuDNN does not apply.")
        return _padded_call(_cudnn_attention, query, key, value, bias, mask, scale)
    if impl == "pallas":
        error = pallas_unsupported(query, key, value, platform)
        if error:
            raise ValueError(
                f"impl='pallas': {error}. impl='auto' falls back to XLA where the TPU kernel does not fit."
            )
        return _padded_call(_pallas_attention, query, key, value, bias, mask, scale)
    return _padded_call(_xla_attention, query, key, value, bias, mask, scale)


def reference_attention(
    query, key, value, *, bias=None, mask=None, scale: float, dropout_rate: float = 0.0, dropout_rng=None
):
    """The explicit form: float32 logits and softmax, weights in v's dtype, optional weight dropout."""
    groups = query.shape[2] // key.shape[2]
    if groups > 1:  # grouped-query attention: every kv head serves `groups` query heads
        key, value = jnp.repeat(key, groups, axis=2), jnp.repeat(value, groups, axis=2)
    logits = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32) * np.float32(scale)
    weights = softmax_weights(logits, bias=bias, mask=mask, dropout_rate=dropout_rate, dropout_rng=dropout_rng)
    return jnp.einsum("bhqk,bkhd->bqhd", weights.astype(value.dtype), value)


def softmax_weights(logits, *, bias=None, mask=None, dropout_rate: float = 0.0, dropout_rng=None):
    """Attention weights from logits [..., keys]: float32 softmax of logits + bias over unmasked keys, dropout.

    The one softmax step of every attention in mixtok; a form whose keys are not one shared set
    (TransNeXt's per-pixel windows) builds its own logits and calls this.
    """
    logits = logits.astype(jnp.float32)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    if mask is not None:
        logits = jnp.where(mask, logits, np.float32(MASKED_LOGIT))
    weights = jax.nn.softmax(logits, axis=-1)
    if dropout_rate > 0.0 and dropout_rng is not None:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
        weights = jnp.where(keep, weights / np.float32(1.0 - dropout_rate), 0.0)
    return weights


def cudnn_unsupported(query, key, value, bias, mask, platform: str) -> str | None:
    """Why cuDNN's fused attention cannot take these arrays (None if it can), per jax's own checks."""
    if platform != "gpu":
        return f"cuDNN runs on a GPU; this call is for platform {platform!r}"
    dtypes = {jnp.dtype(a.dtype) for a in (query, key, value)}
    if len(dtypes) != 1 or dtypes.pop() not in CUDNN_DTYPES:
        return f"q, k, v must share one dtype of float16 / bfloat16; got {query.dtype}, {key.dtype}, {value.dtype}"
    width = max(query.shape[-1], value.shape[-1])
    limit = _cudnn_max_head_dim()
    if width % 8 or width > limit:
        return f"head width {width} must be a multiple of 8 and at most {limit} on this GPU"
    q_len, kv_len = query.shape[1], key.shape[1]
    if (bias is not None or mask is not None) and (q_len % 2 or kv_len % 2):
        return f"with a bias or mask, T ({q_len}) and S ({kv_len}) must be even (cuDNN's backward needs it)"
    return None


def pallas_unsupported(query, key, value, platform: str) -> str | None:
    """Why the TPU flash-attention kernel cannot take these arrays at its default blocks (None if it can)."""
    if platform != "tpu":
        return f"the Pallas flash-attention kernel runs on a TPU; this call is for platform {platform!r}"
    q_len, kv_len = query.shape[1], key.shape[1]
    if q_len % PALLAS_BLOCK or kv_len % PALLAS_BLOCK:
        return f"T ({q_len}) and S ({kv_len}) must be multiples of its {PALLAS_BLOCK}-long blocks"
    width = max(query.shape[-1], value.shape[-1])
    if width > PALLAS_BLOCK and width % PALLAS_BLOCK:
        return f"head width {width} must be at most {PALLAS_BLOCK} or a multiple of {PALLAS_BLOCK}"
    return None


def _auto_impl(query, key, value, bias, mask, dropout_active: bool, platform: str) -> str:
    if dropout_active or value.shape[-1] != query.shape[-1]:
        return "reference"
    if cudnn_unsupported(query, key, value, bias, mask, platform) is None:
        return "cudnn"
    if pallas_unsupported(query, key, value, platform) is None:
        return "pallas"
    return "xla"


def _padded_call(attention, query, key, value, bias, mask, scale):
    """Runs a one-width implementation, zero-padding q, k or v to a common head width (exact) and cutting back."""
    qk_width, v_width = query.shape[-1], value.shape[-1]
    width = max(qk_width, v_width)
    query, key, value = (_pad_last(a, width) for a in (query, key, value))
    return attention(query, key, value, bias, mask, scale)[..., :v_width]


def _pad_last(x, width: int):
    return x if x.shape[-1] == width else jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])])


def _xla_attention(query, key, value, bias, mask, scale):
    return jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask, scale=scale, implementation="xla")


def _cudnn_attention(query, key, value, bias, mask, scale):
    full = (query.shape[1], key.shape[1])
    if bias is not None:  # cuDNN wants the bias's T and S axes whole, in q's dtype
        bias = jnp.broadcast_to(bias, bias.shape[:2] + full).astype(query.dtype)
    if mask is not None:
        mask = jnp.broadcast_to(mask, mask.shape[:2] + full)
    return jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask, scale=scale, implementation="cudnn")


def _pallas_attention(query, key, value, bias, mask, scale):
    # Imported here: loading Pallas' TPU machinery is only worth it for a TPU call.
    from jax.experimental.pallas.ops.tpu.flash_attention import flash_attention

    batch, q_len, heads, _ = query.shape
    groups = heads // key.shape[2]
    if groups > 1:
        key, value = jnp.repeat(key, groups, axis=2), jnp.repeat(value, groups, axis=2)
    ab = None
    if bias is not None or mask is not None:
        # The kernel adds `ab` before multiplying by sm_scale, so the bias enters divided by the scale.
        ab = jnp.zeros((batch, heads, q_len, key.shape[1]), jnp.float32)
        if bias is not None:
            ab = ab + bias.astype(jnp.float32) / np.float32(scale)
        if mask is not None:
            ab = jnp.where(mask, ab, np.float32(MASKED_LOGIT))
    query, key, value = (a.transpose(0, 2, 1, 3) for a in (query, key, value))  # the kernel's [B, heads, T, d]
    return flash_attention(query, key, value, ab, sm_scale=scale).transpose(0, 2, 1, 3)


def _cudnn_max_head_dim() -> int:
    try:
        capability = jax.devices("gpu")[0].compute_capability
    except (RuntimeError, AttributeError, IndexError):
        return CUDNN_MAX_HEAD_DIM  # exporting for a GPU from elsewhere: the limit every GPU takes
    major = int(str(capability).split(".")[0])
    return CUDNN_MAX_HEAD_DIM_HOPPER if major >= 9 else CUDNN_MAX_HEAD_DIM


def _normalise_platform(platform: str) -> str:
    platform = platform.lower()
    return "gpu" if platform in ("cuda", "rocm") else platform


def _check_arrays(query, key, value) -> None:
    for name, array in (("query", query), ("key", key), ("value", value)):
        if array.ndim != 4:
            raise ValueError(
                f"{name} must be [batch, length, heads, head_dim] (jax.nn's layout); got shape {array.shape}."
            )
    if query.shape[0] != key.shape[0] or query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query {query.shape} and key {key.shape} must share the batch (axis 0) and the head width (axis 3)."
        )
    if not query.dtype == key.dtype == value.dtype:
        raise ValueError(
            f"query, key and value must share one dtype (the compute dtype); got {query.dtype}, "
            f"{key.dtype}, {value.dtype}."
        )
    if value.shape[:3] != key.shape[:3]:
        raise ValueError(f"value {value.shape} must match key {key.shape} in batch, length and heads (axes 0-2).")
    if query.shape[2] % key.shape[2]:
        raise ValueError(f"query heads ({query.shape[2]}) must be a multiple of key/value heads ({key.shape[2]}).")


def _check_broadcast(name: str, array, full_shape):
    if array.ndim > 4:
        raise ValueError(
            f"{name} must broadcast to [batch, heads, T, S] = {full_shape}; got {array.ndim} axes {array.shape}."
        )
    array = array.reshape((1,) * (4 - array.ndim) + array.shape)
    try:
        np.broadcast_shapes(array.shape, full_shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {array.shape} does not broadcast to [batch, heads, T, S] = {full_shape}."
        ) from None
    if np.broadcast_shapes(array.shape, full_shape) != full_shape:
        raise ValueError(f"{name} of shape {array.shape} is larger than [batch, heads, T, S] = {full_shape}.")
    return array


class MultiHeadAttention(Module):
    """Multi-head self-attention over every position of [B, ..., C]: fused qkv projection, attention, projection.

    Heads: give `num_heads` (head width dim // num_heads, which must divide) or `head_dim` (then
    num_heads = max(dim // head_dim, 1)), or both for an inner width num_heads * head_dim other than dim
    (CAFormer). The qkv projection's output is ordered (3, heads, head_dim), as in timm and the official
    codes mixtok follows. Parameters: `qkv` (kernel [C, 3 inner]) and `proj` (kernel [inner, C]), renamed by
    a subclass through QKV_NAME / PROJ_NAME. Any axes between batch and channels are flattened into one
    sequence (NHWC maps attend over H * W tokens); `mask` and `bias` broadcast to [B, heads, L, L].
    `attention_implementation` is `dot_product_attention`'s `impl` (None: "auto"); attention dropout
    (`attn_dropout`, in training) makes "auto" use the reference form, the only one with it.
    """

    dim: int
    num_heads: int | None = 8
    head_dim: int | None = None
    qkv_bias: bool = True
    proj_bias: bool = True
    attn_dropout: float = 0.0
    proj_dropout: float = 0.0
    attention_implementation: str | None = None

    QKV_NAME: ClassVar[str] = "qkv"
    PROJ_NAME: ClassVar[str] = "proj"

    @nn.compact
    def __call__(self, x, *, mask=None, bias=None, train: bool = False):
        check_channels(self, x)
        tokens = x.reshape(x.shape[0], -1, x.shape[-1])
        q, k, v = self.project_qkv(tokens)
        out = self.attend(q, k, v, mask=mask, bias=bias, train=train)
        return self.project_out(out, train=train).reshape(x.shape)

    @nn.nowrap
    def heads(self):
        """(number of heads, head width) from `dim`, `num_heads` and `head_dim`."""
        name, dim, heads, width = type(self).__name__, self.dim, self.num_heads, self.head_dim
        if heads is None and width is None:
            raise ValueError(f"{name}: give num_heads or head_dim (both are None).")
        if width is not None and width < 1:
            raise ValueError(f"{name}: head_dim must be a positive integer; got {width}.")
        if heads is None:
            return max(dim // width, 1), width
        if heads < 1 or (width is None and dim % heads):
            raise ValueError(
                f"{name}: dim {dim} must be a positive multiple of num_heads {heads} "
                f"(each head takes dim // num_heads channels)."
            )
        return heads, width or dim // heads

    @nn.nowrap
    def qkv_kernel_init(self):
        return dense_kernel_init(("embed", "heads"))

    @nn.nowrap
    def project_qkv(self, tokens):
        """[..., L, C] -> q, k, v [..., L, heads, head_dim] through the fused projection QKV_NAME."""
        check_channels(self, tokens)
        heads, width = self.heads()
        qkv = Dense(
            3 * heads * width,
            use_bias=self.qkv_bias,
            **self.dtype_kwargs,
            kernel_init=self.qkv_kernel_init(),
            bias_init=zeros_with_axes(("heads",)),
            name=self.QKV_NAME,
        )(tokens)
        qkv = qkv.reshape(tokens.shape[:-1] + (3, heads, width))
        # Tensor parallelism splits the heads (inside mixtok.parallel.sharding_context; else a no-op).
        names = ("batch",) + ("length",) * (tokens.ndim - 2) + ("heads", "kv")
        return tuple(constrain(qkv[..., i, :, :], names) for i in range(3))

    @nn.nowrap
    def attend(self, q, k, v, *, mask=None, bias=None, scale=None, train: bool = False):
        """`dot_product_attention` with this module's implementation and attention dropout (in training)."""
        impl = "auto" if self.attention_implementation is None else self.attention_implementation
        if impl not in IMPLEMENTATIONS:
            raise ValueError(
                f"{type(self).__name__}: attention_implementation {impl!r} is not one of "
                f"{(None,) + IMPLEMENTATIONS} (None: 'auto')."
            )
        rng = self.make_rng("dropout") if train and self.attn_dropout > 0.0 else None
        return dot_product_attention(
            q, k, v, bias=bias, mask=mask, scale=scale, impl=impl, dropout_rate=self.attn_dropout, dropout_rng=rng
        )

    @nn.nowrap
    def project_out(self, out, *, train: bool = False):
        """[..., L, heads, head_dim] -> [..., L, dim] through PROJ_NAME, then the projection dropout."""
        out = out.reshape(out.shape[:-2] + (-1,))
        out = dense(
            self.dim,
            ("heads", "embed"),
            use_bias=self.proj_bias,
            **self.dtype_kwargs,
            name=self.PROJ_NAME,
        )(out)
        out = constrain_channels_last(out, "embed")  # the row-parallel projection's partial sums reduced here
        if self.proj_dropout > 0.0:
            out = nn.Dropout(self.proj_dropout, deterministic=not train)(out)
        return out
