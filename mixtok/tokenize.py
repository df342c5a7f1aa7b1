"""Encode images to tokens and decode tokens to images with a trained tokenizer run.

    python -m mixtok.tokenize encode --workdir RUN --images a.png b.jpg --out tokens.npz
    python -m mixtok.tokenize decode --workdir RUN --tokens tokens.npz --out DIR [--num-tokens k]

RUN is a `python -m mixtok.train` workdir of a tokenizer config (task "tokenizer"); its latest
checkpoint is used (`--step` picks another). Images must be RGB and exactly the run's
`data.image_size` square (resize or crop them first: the tokenizer saw such images in training);
they are normalised with the mean and std the run trained with (its saved `DatasetInfo`).

tokens.npz holds `tokens` ([N, K] int32 for 1D tokenizers, [N, h, w] for 2D ones, float32 codes for
a continuous bottleneck), the image file names, and the run that wrote them: the tokenizer name and
arguments, the checkpoint step and a SHA-256 of the tokenizer's weights. `decode` refuses tokens
from another tokenizer or checkpoint. `--num-tokens k` decodes from the first k tokens only, for the
tokenizers with prefix decoding (One-D-Piece, FlexTok-style). Neither command overwrites a file:
an existing output is an error.
"""

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixtok.files import write_atomically

FORMAT_VERSION = 1


class TokenizeError(ValueError):
    """A user error: the message says what is wrong and what would be valid."""


def _log_quietly():
    import logging

    logging.getLogger("absl").setLevel(logging.WARNING)
    logging.getLogger("jax").setLevel(logging.WARNING)


class TokenizerRun:
    """A trained tokenizer restored from a workdir (`mixtok.train.load_run`), with jitted encode and decode."""

    def __init__(self, workdir: str, step: int | None = None):
        from ml_collections import ConfigDict

        from mixtok.train import load_run

        try:
            run = load_run(workdir, step)
        except ValueError as error:
            raise TokenizeError(str(error)) from None
        task = run.config.get("task", "classification")
        if task != "tokenizer":
            raise TokenizeError(
                f"--workdir {workdir!r} is a {task!r} run, not a tokenizer run (config.task = 'tokenizer')."
            )
        self.config = run.config
        self.model = run.model
        self.variables = run.variables
        self.step = run.step
        self.image_size = run.info.image_size
        # The normalisation the tokenizer was trained with, as the trainer saved it with the run.
        self.mean = np.asarray(run.info.mean, np.float32)
        self.std = np.asarray(run.info.std, np.float32)
        self.identity = {
            "tokenizer": self.config.model.name,
            "kwargs": json.loads(self.config.model.get("kwargs", ConfigDict()).to_json_best_effort()),
            "image_size": self.image_size,
            "step": self.step,
            "weights_sha256": weights_digest(self.variables["params"]),
        }
        self._compile()

    # ------------------------------------------------------------------------------------------ tokens

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, S, S, 3] -> tokens (indices, or codes for a continuous bottleneck)."""
        x = (images.astype(np.float32) / 255.0 - self.mean) / self.std
        out = self._encode(self.variables, x)
        return np.asarray(out.indices if out.indices is not None else out.quantized)

    def decode(self, tokens: np.ndarray, num_tokens: int | None = None) -> np.ndarray:
        """tokens -> uint8 [N, S, S, 3]."""
        method = "decode_indices" if np.issubdtype(tokens.dtype, np.integer) else "decode"
        images = self._decode(self.variables, tokens, method, num_tokens)
        pixels = np.asarray(images, np.float32) * self.std + self.mean
        return np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)

    def _compile(self):
        """One jitted encode and decode per run, reused by every batch (a batch of another size retraces)."""
        import jax

        self._encode = jax.jit(lambda v, x: self.model.apply(v, x, train=False, method="encode"))

        def decode(variables, tokens, method, num_tokens):
            kwargs = {} if num_tokens is None else {"num_tokens": num_tokens}
            return self.model.apply(variables, tokens, method=method, **kwargs)

        self._decode = jax.jit(decode, static_argnums=(2, 3))


def weights_digest(params: Any) -> str:
    """SHA-256 over the tokenizer's parameter arrays (names, shapes, dtypes and bytes), in key order."""
    import jax

    digest = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0], key=lambda item: str(item[0])):
        array = np.asarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}|{array.shape}|{array.dtype}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def read_images(paths: Sequence[str], image_size: int) -> np.ndarray:
    """uint8 [N, S, S, 3]; errors name the file and what is wrong (size, mode, unreadable)."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                mode, size = image.mode, image.size
                if mode != "RGB":
                    raise TokenizeError(
                        f"{path}: the image is {mode!r}; the tokenizer takes RGB images "
                        f"(convert it, e.g. PIL's image.convert('RGB'))."
                    )
                if size != (image_size, image_size):
                    raise TokenizeError(
                        f"{path}: the image is {size[0]}x{size[1]} (width x height); this tokenizer "
                        f"takes {image_size}x{image_size} images (resize or crop it first)."
                    )
                images.append(np.asarray(image, np.uint8))
        except FileNotFoundError:
            raise TokenizeError(f"{path}: no such file.") from None
        except UnidentifiedImageError:
            raise TokenizeError(f"{path}: not an image file PIL can read.") from None
    return np.stack(images)


def _refuse_existing(path: Path, what: str) -> None:
    if path.exists():
        raise TokenizeError(f"{what} {str(path)!r} already exists; choose another path (nothing was overwritten).")


def encode_command(
    workdir: str, image_paths: Sequence[str], out: str, step: int | None = None, batch_size: int = 32
) -> Path:
    out_path = Path(out)
    if out_path.suffix != ".npz":
        raise TokenizeError(f"--out {out!r} must end in .npz.")
    _refuse_existing(out_path, "--out")
    run = TokenizerRun(workdir, step)
    images = read_images(image_paths, run.image_size)
    tokens = np.concatenate([run.encode(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    header = {
        "format": FORMAT_VERSION,
        **run.identity,
        "num_latent_tokens": getattr(run.model, "num_latent_tokens", None),
    }

    def write(path):
        with open(path, "wb") as f:
            np.savez(
                f,
                tokens=tokens,
                files=np.asarray([str(p) for p in image_paths]),
                header=np.asarray(json.dumps(header, sort_keys=True)),
            )

    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out_path, write)
    return out_path


def read_tokens(path: str) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if not {"tokens", "files", "header"} <= set(data.files):
                raise TokenizeError(f"{path}: not a mixtok tokens file (it lacks tokens / files / header arrays).")
            return {
                "tokens": data["tokens"],
                "files": [str(f) for f in data["files"]],
                "header": json.loads(str(data["header"])),
            }
    except FileNotFoundError:
        raise TokenizeError(f"--tokens {path!r}: no such file.") from None
    except (OSError, ValueError) as error:
        if isinstance(error, TokenizeError):
            raise
        raise TokenizeError(f"--tokens {path!r} is not a readable .npz file: {error}") from None


def check_same_tokenizer(header: dict[str, Any], run: TokenizerRun, path: str) -> None:
    """Tokens decode only with the tokenizer (architecture, image size and weights) that wrote them."""
    mine = run.identity
    for key in ("tokenizer", "kwargs", "image_size"):
        if header.get(key) != mine[key]:
            raise TokenizeError(
                f"{path} was written by a different tokenizer: its {key} is {header.get(key)!r}, "
                f"this run's is {mine[key]!r}. Decode it with the --workdir that encoded it."
            )
    if header.get("weights_sha256") != mine["weights_sha256"]:
        raise TokenizeError(
            f"{path} was written by other weights of {mine['tokenizer']} (checkpoint step "
            f"{header.get('step')}; this run's step {mine['step']} has different weights): a token "
            f"means a different code. Pass --step {header.get('step')} if that checkpoint is kept."
        )


def decode_command(
    workdir: str,
    tokens_path: str,
    out: str,
    num_tokens: int | None = None,
    step: int | None = None,
    batch_size: int = 32,
) -> list[Path]:
    saved = read_tokens(tokens_path)
    run = TokenizerRun(workdir, step if step is not None else saved["header"].get("step"))
    check_same_tokenizer(saved["header"], run, tokens_path)
    if num_tokens is not None:
        if not getattr(run.model, "PREFIX_DECODING", False):
            raise TokenizeError(
                f"--num-tokens: {run.config.model.name} has no prefix decoding; decode all tokens "
                "(prefix decoding is for One-D-Piece and FlexTok-style tokenizers)."
            )
        total = run.model.num_latent_tokens
        if not 1 <= num_tokens <= total:
            raise TokenizeError(f"--num-tokens {num_tokens} is out of range: valid values are 1..{total}.")
    out_dir = Path(out)
    stems = [Path(f).stem for f in saved["files"]]
    names = [f"{i:04d}_{stem}.png" for i, stem in enumerate(stems)]
    paths = [out_dir / name for name in names]
    for path in paths:
        _refuse_existing(path, "output image")
    tokens = saved["tokens"]
    out_dir.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for i in range(0, len(tokens), batch_size):
        images = run.decode(tokens[i : i + batch_size], num_tokens)
        for image, path in zip(images, paths[i : i + batch_size]):
            write_atomically(path, lambda p, image=image: Image.fromarray(image, "RGB").save(p, format="PNG"))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixtok.tokenize", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    encode = commands.add_parser("encode", help="images -> tokens.npz")
    encode.add_argument("--workdir", required=True, help="the tokenizer's training workdir")
    encode.add_argument("--images", required=True, nargs="+", help="RGB images of the run's image size")
    encode.add_argument("--out", required=True, help="the .npz file to write (must not exist)")
    encode.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    decode = commands.add_parser("decode", help="tokens.npz -> PNG images")
    decode.add_argument("--workdir", required=True, help="the tokenizer's training workdir")
    decode.add_argument("--tokens", required=True, help="a .npz written by `encode`")
    decode.add_argument("--out", required=True, help="folder for the PNGs (existing files are never replaced)")
    decode.add_argument("--num-tokens", type=int, default=None, help="decode from the first k tokens only")
    decode.add_argument("--step", type=int, default=None, help="checkpoint step (default: the one that encoded)")
    args = parser.parse_args(argv)
    _log_quietly()
    try:
        if args.command == "encode":
            path = encode_command(args.workdir, args.images, args.out, args.step)
            print(f"wrote {path}")
        else:
            paths = decode_command(args.workdir, args.tokens, args.out, args.num_tokens, args.step)
            print(f"wrote {len(paths)} images to {args.out}")
    except TokenizeError as error:
        print(f"mixtok.tokenize: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
