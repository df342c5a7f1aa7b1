"""Issue 13 ("Nothing lost, nothing silent"), token files: `decode_indices` raises ValueError for ids outside
the codebook unless traced (and still jits); written files get the umask's permissions."""

import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.files import current_umask, write_atomically


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
