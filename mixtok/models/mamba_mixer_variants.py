"""The named ViM2 variants (Vision MambaMixer tiny / small / base), as data, FROM THE PAPER ONLY.

Source: "MambaMixer: Efficient Selective State Space Models with Dual Token and Channel Selection" (arXiv
2403.19888 v1), appendix table "Architectural overview of the ViM2 in different scales" (stem width, token and
channel mixers per stage) and Table "Accuracy comparison across various models on ImageNet-1K" (#Parameters in
millions, rounded, and top-1 at 224 px, marked there "preliminary results"); read from the v1 LaTeX source as
copied in n8thantran/mambamixer-replication @ 34052f7e: paper/paper.tex (a third-party replication of the
paper's time-series part; its code is not used). There is no official code or
checkpoint (MambaMixer/M2 @ 250a86b9: README only), so `official_params` is None; the drop path rates are VMamba
v0's (MzeroMiko/VMamba @ 943d2042: classification/configs/vssm/vmambav0_{tiny,small,base}_224.yaml), which the
paper says it follows (it states none itself).

    name        stem   token mixers   channel mixers  drop path  mixtok count  paper: #Param  top-1
    vim2_tiny   96     (2, 2, 6, 2)   (1, 1, 3, 1)    0.2        19,293,655    20M            82.7%
    vim2_small  96     (2, 2, 18, 2)  (1, 1, 9, 1)    0.3        33,630,196    43M            83.7%
    vim2_base   128    (2, 2, 18, 2)  (1, 1, 9, 1)    0.5        57,741,716    74M            83.9%

(mixtok counts: 224 px, 1000 classes, `mixtok.models.count_params`.) The tiny count is within 0.7M of the
paper's 20M; small and base fall 9.4M and 16.3M short. With this reading of the table (the channel mixers
cost a few hundred parameters each: mixtok.mixers.mamba_mixer) no choice left open by the paper closes that gap:
VMamba v0 with (2, 2, 27, 2) blocks, which the paper lists at 44M / 75M, is what small and base's counts would
fit, and tiny's 20M fits (2, 2, 6, 2). The table and the counts cannot both hold for all three; mixtok follows
the table.
"""

from mixtok.models.mamba_mixer import ViM2
from mixtok.models.registry import ModelSpec, register_model

PAPER = (
    "MambaMixer: Efficient Selective State Space Models with Dual Token and Channel Selection (Behrouz et al., 2024)"
)

# name: (stem width, token mixers per stage, channel mixers per stage, drop path, paper's #Param (M), top-1)
SIZES = {
    "vim2_tiny": (96, (2, 2, 6, 2), (1, 1, 3, 1), 0.2, 20, 82.7),
    "vim2_small": (96, (2, 2, 18, 2), (1, 1, 9, 1), 0.3, 43, 83.7),
    "vim2_base": (128, (2, 2, 18, 2), (1, 1, 9, 1), 0.5, 74, 83.9),
}


def _register_all() -> None:
    for name, (dim, depths, channel_depths, drop_path_rate, _, _) in SIZES.items():
        kwargs = dict(
            depths=depths,
            channel_depths=channel_depths,
            dims=tuple(dim * 2**i for i in range(4)),
            drop_path_rate=drop_path_rate,
        )
        register_model(name, ModelSpec(ViM2, kwargs, PAPER, None))


_register_all()
