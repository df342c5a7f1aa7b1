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
tokenizers with prefix decoding (One-D-Piece, FlexTok-style); a file may also hold a prefix of the
tokens of such a tokenizer.

`decode` checks the tokens before decoding anything: integer ids (float codes only for a continuous
bottleneck) in 0..codebook size - 1, in the shape the tokenizer encodes. A decode under jit cannot look
at the values (an id outside the codebook would decode to some other code, or NaN, without a word), so
the checks run here, on the file's arrays.

Outputs: neither command overwrites a file: an existing output is an error and nothing is written
(`decode --out` may be an existing folder: the PNGs must not exist in it). Files are written whole or
not at all, with the permissions a plain open() gives (0o666 less the umask).

Exit status: 0 when everything was written; 2 for a bad argument, input or output (a missing or
unreadable file, a file that is not a mixtok token file, tokens from another tokenizer, ids outside
the codebook, an output that exists or cannot be written), with one line on stderr
"mixtok.tokenize: error: ..." that says what is wrong and what would be valid (argparse's usage
errors are 2 as well).
"""

import argparse
import hashlib
import json
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixtok.files import write_atomically

FORMAT_VERSION = 1
TOKEN_FILE_KEYS = ("tokens", "files", "header")
TOKEN_FILE = (
    "a mixtok token file (written by `python -m mixtok.tokenize encode`) is a .npz holding the arrays "
    "tokens (integer ids), files (the image names) and header (JSON text naming the tokenizer)"
)


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
        # Entries of the quantizer's codebook (None: a continuous bottleneck, whose tokens are float codes).
        self.codebook_size = getattr(self.model.bind(self.variables).quantize, "codebook_size", None)
        self._token_shape = None
        self._compile()

    @property
    def token_shape(self) -> tuple[int, ...]:
        """The shape of one image's tokens, as `encode` writes them: (K,), (h, w), (K, depth), (K, code_dim)."""
        if self._token_shape is None:
            import jax

            images = jax.ShapeDtypeStruct((1, self.image_size, self.image_size, 3), np.float32)
            out = jax.eval_shape(self._encode, self.variables, images)
            self._token_shape = tuple((out.indices if out.indices is not None else out.quantized).shape[1:])
        return self._token_shape

    def token_problem(self, tokens: np.ndarray) -> str | None:
        """None if `decode` can take `tokens`; else what is wrong with them and what would be valid.

        The tokenizer's jitted decode cannot look at the values, so this is where ids outside the
        codebook are caught."""
        from mixtok.tokenizers.base import out_of_range_tokens

        continuous = self.codebook_size is None
        if continuous and not np.issubdtype(tokens.dtype, np.floating):
            return (
                f"the tokens are {tokens.dtype} values; this tokenizer has a continuous bottleneck: its token "
                "files hold float32 codes"
            )
        if not continuous and not np.issubdtype(tokens.dtype, np.integer):
            return (
                f"the tokens are {tokens.dtype} values, not token ids: token files hold integer ids (int32), "
                f"here 0..{self.codebook_size - 1} for this tokenizer's {self.codebook_size:,} codes"
            )
        expected = self.token_shape
        shape = tuple(tokens.shape[1:])
        prefix = getattr(self.model, "PREFIX_DECODING", False) and len(expected) >= 1
        if shape != expected and not (
            prefix and len(shape) == len(expected) and shape[1:] == expected[1:] and 1 <= shape[0] <= expected[0]
        ):
            what = f"[N, {', '.join(map(str, expected))}]"
            if prefix:
                what += f" (or a prefix of 1..{expected[0]} tokens: [N, k{''.join(f', {d}' for d in expected[1:])}])"
            return f"the tokens have shape {list(tokens.shape)}; this tokenizer's are {what}"
        if continuous:
            if not np.isfinite(tokens).all():
                bad = np.size(tokens) - np.count_nonzero(np.isfinite(tokens))
                return f"{bad} of the {np.size(tokens)} float codes are not finite (NaN or inf)"
            return None
        return out_of_range_tokens(tokens, self.codebook_size)

    # ------------------------------------------------------------------------------------------ tokens

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, S, S, 3] -> tokens (indices, or codes for a continuous bottleneck)."""
        x = (images.astype(np.float32) / 255.0 - self.mean) / self.std
        out = self._encode(self.variables, x)
        return np.asarray(out.indices if out.indices is not None else out.quantized)

    def decode(self, tokens: np.ndarray, num_tokens: int | None = None) -> np.ndarray:
        """tokens -> uint8 [N, S, S, 3]; a TokenizeError for tokens this tokenizer cannot decode (`token_problem`)."""
        tokens = np.asarray(tokens)
        problem = self.token_problem(tokens)
        if problem is not None:
            raise TokenizeError(f"the tokens: {problem}.")
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


def _check_folder_can_be(folder: Path, flag: str) -> None:
    """A TokenizeError unless `folder` is, or can be made, a folder: no file on its path."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == folder else f"cannot be made: {str(existing)!r} is a file"
        raise TokenizeError(f"{flag}: the folder {str(folder)!r} {where}, not a folder; choose another path.")


def _cannot_write(flag: str, path: Path, error: OSError, written: str = "") -> TokenizeError:
    reason = error.strerror or str(error)
    return TokenizeError(f"{flag}: cannot write {str(path)!r}: {reason}.{written}")


def encode_command(
    workdir: str, image_paths: Sequence[str], out: str, step: int | None = None, batch_size: int = 32
) -> Path:
    out_path = Path(out)
    if out_path.is_dir():
        raise TokenizeError(f"--out {out!r} is a folder; encode writes one .npz file: name a new file ending in .npz.")
    if out_path.suffix != ".npz":
        raise TokenizeError(f"--out {out!r} must end in .npz.")
    _refuse_existing(out_path, "--out")
    _check_folder_can_be(out_path.parent, "--out")
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

    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out_path, write)
    except FileExistsError as error:  # it appeared while we encoded
        raise TokenizeError(f"--out: {error}") from None
    except OSError as error:
        raise _cannot_write("--out", out_path, error, " Nothing was written.") from None
    return out_path


def read_tokens(path: str) -> dict[str, Any]:
    """The arrays of a token file `encode` wrote; a TokenizeError (one line) for anything else."""
    where = f"--tokens {path!r}"
    if os.path.isdir(path):
        raise TokenizeError(f"{where} is a folder; {TOKEN_FILE}.")
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise TokenizeError(f"{where}: no such file.") from None
    except OSError as error:
        raise TokenizeError(f"{where} cannot be read: {error.strerror or error}.") from None
    except (ValueError, EOFError, zipfile.BadZipFile):  # numpy's "pickled data" for any non-.npy/.npz file
        raise TokenizeError(f"{where} is not a mixtok token file (not a .npz archive); {TOKEN_FILE}.") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise TokenizeError(
            f"{where} is not a mixtok token file (a single .npy array of shape {list(data.shape)}, not a .npz "
            f"archive); {TOKEN_FILE}."
        )
    with data:
        missing = [key for key in TOKEN_FILE_KEYS if key not in data.files]
        if missing:
            held = ", ".join(sorted(data.files)) or "no arrays"
            raise TokenizeError(
                f"{where} is not a mixtok token file: it holds {held} (no {' / '.join(missing)}); {TOKEN_FILE}."
            )
        arrays = {}
        for key in TOKEN_FILE_KEYS:
            try:
                arrays[key] = data[key]
            except ValueError:  # an object array: numpy would need allow_pickle, which we never give
                raise TokenizeError(
                    f"{where} is not a mixtok token file: its {key!r} array holds Python objects (pickled), "
                    f"which mixtok does not load; {TOKEN_FILE}."
                ) from None
            except (OSError, EOFError, zipfile.BadZipFile) as error:
                raise TokenizeError(f"{where} is damaged: its {key!r} array cannot be read ({error}).") from None
    tokens, files = arrays["tokens"], arrays["files"]
    try:
        header = json.loads(str(arrays["header"])) if arrays["header"].ndim == 0 else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        found = "no mixtok header" if not isinstance(header, dict) else f"format {header.get('format')!r}"
        raise TokenizeError(
            f"{where}: its header is not a mixtok token header of format {FORMAT_VERSION} ({found}); {TOKEN_FILE}."
        )
    if tokens.ndim < 2 or files.ndim != 1 or len(files) != len(tokens):
        raise TokenizeError(
            f"{where} holds tokens of shape {list(tokens.shape)} and {files.size} file names; a token file has "
            "one row of tokens per image (an array [N, ...] of rank 2 or more) and one image name per row."
        )
    return {"tokens": tokens, "files": [str(f) for f in files], "header": header}


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
    out_dir = Path(out)
    _check_folder_can_be(out_dir, "--out")
    run = TokenizerRun(workdir, step if step is not None else saved["header"].get("step"))
    check_same_tokenizer(saved["header"], run, tokens_path)
    tokens = saved["tokens"]
    problem = run.token_problem(tokens)
    if problem is not None:
        raise TokenizeError(f"--tokens {tokens_path!r}: {problem}.")
    if num_tokens is not None:
        if not getattr(run.model, "PREFIX_DECODING", False):
            raise TokenizeError(
                f"--num-tokens: {run.config.model.name} has no prefix decoding; decode all tokens "
                "(prefix decoding is for One-D-Piece and FlexTok-style tokenizers)."
            )
        total = min(run.model.num_latent_tokens, tokens.shape[1])  # the file may hold a prefix
        if not 1 <= num_tokens <= total:
            raise TokenizeError(f"--num-tokens {num_tokens} is out of range: valid values are 1..{total}.")
    stems = [Path(f).stem for f in saved["files"]]
    names = [f"{i:04d}_{stem}.png" for i, stem in enumerate(stems)]
    paths = [out_dir / name for name in names]
    for path in paths:
        _refuse_existing(path, "output image")
    from PIL import Image

    written = 0
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for i in range(0, len(tokens), batch_size):
            images = run.decode(tokens[i : i + batch_size], num_tokens)
            for image, path in zip(images, paths[i : i + batch_size], strict=True):
                write_atomically(path, lambda p, image=image: Image.fromarray(image, "RGB").save(p, format="PNG"))
                written += 1
    except OSError as error:
        failed = paths[written] if written < len(paths) else out_dir
        done = f" {written} of {len(paths)} images were written before it." if written else " Nothing was written."
        if isinstance(error, FileExistsError):  # it appeared while we decoded
            raise TokenizeError(f"--out: {error}{done}") from None
        raise _cannot_write("--out", failed, error, done) from None
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mixtok.tokenize",
        description=__doc__.splitlines()[0],
        epilog=__doc__[__doc__.index("Exit status:") :],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    encode = commands.add_parser("encode", help="images -> tokens.npz")
    encode.add_argument("--workdir", required=True, help="the tokenizer's training workdir")
    encode.add_argument("--images", required=True, nargs="+", help="RGB images of the run's image size")
    encode.add_argument("--out", required=True, help="the .npz file to write (must not exist)")
    encode.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    decode = commands.add_parser("decode", help="tokens.npz -> PNG images")
    decode.add_argument("--workdir", required=True, help="the tokenizer's training workdir")
    decode.add_argument("--tokens", required=True, help="a .npz written by `encode`")
    decode.add_argument(
        "--out", required=True, help="folder for the PNGs, new or existing (existing files are never replaced)"
    )
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
