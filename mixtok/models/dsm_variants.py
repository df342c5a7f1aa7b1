"""The named DSM variants, as data: DFFormer's four sizes with the Dynamic Spectrum Mixer.

The DSM paper's own variant table (names, depths, widths, parameter counts) could not be retrieved
(see `mixtok.models.dsm`), so these are stand-ins, not the paper's models: the depths and widths of
DFFormer-S18/S36/M36/B36 (okojoalg/dfformer @ 11f8c7b: models/dfformer.py, `dfformer_*`), named
after them. No count is official (`official_params=None`), and `PAPER_PARAMS` is empty until the
paper's table is read; their counts differ from DFFormer's only in the base filters, a real
[H, W, 4] per block instead of DFFormer's complex [H, W//2+1, 4] (tests/models/test_dsm.py).
"""

from mixtok.models.dsm import PAPER, dsm_kwargs  # also registers the "dynamic_spectrum_mixer" mixer
from mixtok.models.metaformer import MetaFormer
from mixtok.models.registry import ModelSpec, register_model

SIZES = {  # name: (depths, dims), DFFormer's
    "s18": ((3, 3, 9, 3), (64, 128, 320, 512)),
    "s36": ((3, 12, 18, 3), (64, 128, 320, 512)),
    "m36": ((3, 12, 18, 3), (96, 192, 384, 576)),
    "b36": ((3, 12, 18, 3), (128, 256, 512, 768)),
}
# The paper's reported parameter counts by variant name, rounded as printed (e.g. "22M"); empty
# because the paper's variant table could not be retrieved. Fill in before claiming parity.
PAPER_PARAMS: dict[str, str] = {}
STAND_IN = f"{PAPER}; sizes are DFFormer's stand-ins, not the paper's table"


def _register_all() -> None:
    for size, (depths, dims) in SIZES.items():
        register_model(f"dsm_{size}", ModelSpec(MetaFormer, dsm_kwargs(depths, dims), STAND_IN, None))


_register_all()
