"""Issue 13 ("Nothing lost, nothing silent"), token files: `python -m mixtok.tokenize decode` refuses ids
outside the codebook, float tokens, foreign .npz files and an --out that is a file, each with one line on
stderr and exit status 2; `decode_indices` raises ValueError for such ids unless traced (and still jits);
written files get the umask's permissions."""

import json
import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import tokenize
from mixtok.files import current_umask, write_atomically
from tests.test_tokenize import run  # noqa: F401 (the module-scoped tiny One-D-Piece run: FSQ (5, 5, 5), 4 tokens)

CODES = 125  # FSQ levels (5, 5, 5)


@pytest.fixture(scope="module")
def encoded(run, tmp_path_factory):  # noqa: F811
    workdir, paths = run
    path = tmp_path_factory.mktemp("encoded") / "tokens.npz"
    assert tokenize.main(["encode", "--workdir", str(workdir), "--images", *paths, "--out", str(path)]) == 0
    return workdir, tokenize.read_tokens(str(path))


def _save(path, tokens, saved):
    np.savez(path, tokens=tokens, files=np.asarray(saved["files"]), header=np.asarray(json.dumps(saved["header"])))
    return str(path)


def _error(capsys, *argv):
    """Runs the CLI, expects exit status 2 and returns its one stderr line."""
    assert tokenize.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixtok.tokenize: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def _decode_error(capsys, workdir, tokens_path, out):
    return _error(capsys, "decode", "--workdir", workdir, "--tokens", tokens_path, "--out", out)


@pytest.mark.parametrize("bad", [70000, -5])
def test_ids_outside_the_codebook_are_refused_saying_which_and_the_valid_range(encoded, tmp_path, capsys, bad):
    workdir, saved = encoded
    tokens = saved["tokens"].copy()
    tokens[1, 2] = bad
    err = _decode_error(capsys, workdir, _save(tmp_path / "t.npz", tokens, saved), tmp_path / "out")
    low, high = min(bad, int(saved["tokens"].min())), max(bad, int(saved["tokens"].max()))
    assert (
        f"1 of 12 token ids are outside the codebook (at [1, 2]; the ids found range from {low} to {high}); "
        f"valid ids are 0..{CODES - 1} (the tokenizer's {CODES} codes)."
    ) in err
    assert not (tmp_path / "out").exists()  # nothing decoded, no folder made

    many = np.full_like(saved["tokens"], bad)
    err = _decode_error(capsys, workdir, _save(tmp_path / "many.npz", many, saved), tmp_path / "out")
    assert "12 of 12 token ids are outside the codebook (first 5 at [0, 0], [0, 1], [0, 2], [0, 3], [1, 0];" in err


def test_float_tokens_are_refused_as_not_token_ids(encoded, tmp_path, capsys):
    workdir, saved = encoded
    path = _save(tmp_path / "float.npz", saved["tokens"].astype(np.float32), saved)
    err = _decode_error(capsys, workdir, path, tmp_path / "out")
    assert (
        "the tokens are float32 values, not token ids: token files hold integer ids (int32), here 0..124 for this "
        "tokenizer's 125 codes." in err
    )


def test_tokens_of_the_wrong_shape_are_refused(encoded, tmp_path, capsys):
    workdir, saved = encoded
    path = _save(tmp_path / "shape.npz", np.zeros((3, 4, 2), np.int32), saved)
    err = _decode_error(capsys, workdir, path, tmp_path / "out")
    assert "the tokens have shape [3, 4, 2]; this tokenizer's are [N, 4] (or a prefix of 1..4 tokens: [N, k])" in err
    prefix = _save(tmp_path / "prefix.npz", saved["tokens"][:, :2], saved)  # the first 2 of 4 tokens: decodes
    assert tokenize.main(["decode", "--workdir", str(workdir), "--tokens", prefix, "--out", str(tmp_path / "k2")]) == 0
    err = _error(capsys, "decode", "--workdir", workdir, "--tokens", prefix, "--out", tmp_path, "--num-tokens", 3)
    assert "--num-tokens 3 is out of range: valid values are 1..2." in err


def test_out_that_is_a_file_is_refused_and_left_alone(encoded, tmp_path, capsys):
    workdir, saved = encoded
    tokens_path = _save(tmp_path / "t.npz", saved["tokens"], saved)
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    err = _decode_error(capsys, workdir, tokens_path, mine)
    assert f"--out: the folder {str(mine)!r} is a file, not a folder; choose another path." in err
    err = _decode_error(capsys, workdir, tokens_path, mine / "pngs")
    assert f"--out: the folder {str(mine / 'pngs')!r} cannot be made: {str(mine)!r} is a file" in err
    assert mine.read_text() == "mine"
    # encode's --out is a file: a folder there is refused, and so is an existing file (never overwritten).
    err = _error(capsys, "encode", "--workdir", workdir, "--images", "x.png", "--out", tmp_path)
    assert f"--out {str(tmp_path)!r} is a folder; encode writes one .npz file" in err
    err = _error(capsys, "encode", "--workdir", workdir, "--images", "x.png", "--out", tokens_path)
    assert "already exists; choose another path (nothing was overwritten)" in err
    # decode into an existing folder is fine, but not over an image already there.
    assert tokenize.main(["decode", "--workdir", str(workdir), "--tokens", tokens_path, "--out", str(tmp_path)]) == 0
    first = tmp_path / "0000_a.png"
    before = first.read_bytes()
    err = _decode_error(capsys, workdir, tokens_path, tmp_path)
    assert f"output image {str(first)!r} already exists" in err and first.read_bytes() == before


def test_a_foreign_npz_is_not_a_token_file(encoded, tmp_path, capsys):
    workdir, saved = encoded
    key_line = "a mixtok token file (written by `python -m mixtok.tokenize encode`) is a .npz holding the arrays tokens"

    np.savez(tmp_path / "other.npz", images=np.zeros((2, 3)), labels=np.arange(2))
    err = _decode_error(capsys, workdir, tmp_path / "other.npz", tmp_path / "out")
    assert "is not a mixtok token file: it holds images, labels (no tokens / files / header); " + key_line in err

    objects = np.empty(3, dtype=object)
    objects[:] = [{"a": 1}, [2], "3"]
    np.savez(tmp_path / "objects.npz", tokens=objects, files=np.asarray(saved["files"]), header=np.asarray("{}"))
    err = _decode_error(capsys, workdir, tmp_path / "objects.npz", tmp_path / "out")
    assert "its 'tokens' array holds Python objects (pickled), which mixtok does not load; " + key_line in err
    assert "allow_pickle" not in err

    (tmp_path / "text.npz").write_text("not numpy at all")
    err = _decode_error(capsys, workdir, tmp_path / "text.npz", tmp_path / "out")
    assert "is not a mixtok token file (not a .npz archive); " + key_line in err

    np.save(tmp_path / "array.npy", saved["tokens"])
    err = _decode_error(capsys, workdir, tmp_path / "array.npy", tmp_path / "out")
    assert "is not a mixtok token file (a single .npy array of shape [3, 4], not a .npz archive)" in err

    np.savez(tmp_path / "header.npz", tokens=saved["tokens"], files=np.asarray(saved["files"]), header=np.asarray("x"))
    err = _decode_error(capsys, workdir, tmp_path / "header.npz", tmp_path / "out")
    assert "its header is not a mixtok token header of format 1 (no mixtok header)" in err

    path = _save(tmp_path / "rows.npz", saved["tokens"][:2], saved)  # 2 rows of tokens, 3 image names
    err = _decode_error(capsys, workdir, path, tmp_path / "out")
    assert "holds tokens of shape [2, 4] and 3 file names; a token file has one row of tokens per image" in err
    assert not (tmp_path / "out").exists()


def test_decode_indices_checks_concrete_ids_and_still_jits(encoded):
    workdir, saved = encoded
    restored = tokenize.TokenizerRun(str(workdir))
    model, variables = restored.model, restored.variables
    tokens = jnp.asarray(saved["tokens"])

    def decode(indices):
        return model.apply(variables, indices, method="decode_indices")

    eager = decode(tokens)
    np.testing.assert_allclose(np.asarray(jax.jit(decode)(tokens)), np.asarray(eager), atol=1e-5)
    for bad in (70000, -5):
        with pytest.raises(ValueError, match=r"1 of 12 token ids are outside the codebook \(at \[0, 3\];.*0\.\.124"):
            decode(tokens.at[0, 3].set(bad))
        jax.jit(decode)(tokens.at[0, 3].set(bad))  # traced: no values to check (documented), no error
        with pytest.raises(tokenize.TokenizeError, match="outside the codebook"):
            restored.decode(np.asarray(tokens.at[0, 3].set(bad)))  # the run's jitted decode checks first
    with pytest.raises(ValueError, match="float32 values; token ids are integers"):
        decode(tokens.astype(jnp.float32))
    with pytest.raises(ValueError, match="float32 values; token ids are integers"):
        jax.jit(decode)(tokens.astype(jnp.float32))  # the dtype is static: checked under jit too


def test_vqgan_decode_indices_checks_ids():
    from mixtok.tokenizers.vqgan import VQGAN

    model = VQGAN(
        image_size=8, filters=8, channel_multipliers=(1, 1), num_res_blocks=0, norm_groups=4,
        quantizer={"name": "vq", "codebook_size": 16, "code_dim": 4},
    )  # fmt: skip
    indices = jnp.zeros((1, 4, 4), jnp.int32)
    variables = model.init(jax.random.PRNGKey(0), indices, method="decode_indices")
    np.testing.assert_array_equal(
        np.asarray(jax.jit(lambda i: model.apply(variables, i, method="decode_indices"))(indices)),
        np.asarray(model.apply(variables, indices, method="decode_indices")),
    )
    with pytest.raises(ValueError, match=r"VQGAN.decode_indices: 1 of 16 token ids .*\[0, 2, 1\].*valid ids are 0..15"):
        model.apply(variables, indices.at[0, 2, 1].set(16), method="decode_indices")
    with pytest.raises(ValueError, match="float16 values"):
        model.apply(variables, indices.astype(jnp.float16), method="decode_indices")


@pytest.fixture
def umask():
    """Sets the umask for one test and restores it."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_follow_the_umask_and_replaced_files_keep_their_mode(umask, tmp_path):
    def write(text):
        def to(path):
            with open(path, "w") as f:
                f.write(text)

        return to

    for mask in (0o022, 0o077, 0o002):
        umask(mask)
        assert current_umask() == mask
        path = tmp_path / f"new_{mask:o}"
        write_atomically(path, write("x"))
        with open(tmp_path / f"plain_{mask:o}", "w"):
            pass
        assert _mode(path) == 0o666 & ~mask == _mode(tmp_path / f"plain_{mask:o}")
    umask(0o022)
    kept = tmp_path / "kept"
    kept.write_text("old")
    os.chmod(kept, 0o640)
    write_atomically(kept, write("new"), overwrite=True)
    assert kept.read_text() == "new" and _mode(kept) == 0o640
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_the_cli_writes_with_the_umask(encoded, umask, tmp_path):
    workdir, saved = encoded
    tokens_path = _save(tmp_path / "t.npz", saved["tokens"], saved)
    umask(0o027)
    out = tmp_path / "o"
    assert tokenize.main(["decode", "--workdir", str(workdir), "--tokens", tokens_path, "--out", str(out)]) == 0
    assert {_mode(p) for p in (tmp_path / "o").iterdir()} == {0o640}
