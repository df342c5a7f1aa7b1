"""The named Strip-MLP variants (official tiny_light, tiny, small, base), as data.

Source: Med-Process/Strip_MLP @ 492d7050, configs/smlp_{tiny_light,tiny,small,base}_alpha3_patch4_224_imagenet1k.yaml
on config.py's defaults (PATCH_SIZE 4, IN_CHANS 3), built by models/build.py (`StripMLPNet(img_size=224,
embed_dim=EMBED_DIM, layers=LAYERS, alpha=ALPHA)`). Counts are the official
`sum(p.numel() for p in model.parameters())` at 224 px with 1000 classes (BatchNorm weights and biases counted,
running statistics not):

    strip_mlp_tiny_light  EMBED_DIM 80   LAYERS (2, 2, 6, 2)   18,243,920   README: 81.2% top-1, 2.5G FLOPs
    strip_mlp_tiny        EMBED_DIM 80   LAYERS (2, 2, 12, 2)  24,903,920   README: 82.2%, 3.7G
    strip_mlp_small       EMBED_DIM 96   LAYERS (2, 2, 18, 2)  42,568,600   README: 83.3%, 6.8G
    strip_mlp_base        EMBED_DIM 112  LAYERS (2, 2, 18, 2)  57,216,480   README: 83.6%, 9.2G

ALPHA is 3 in every yaml. Drop path is the official hard-coded 0.1 for every block (see `mixtok.models.strip_mlp`).
"""

from mixtok.models.registry import ModelSpec, register_model
from mixtok.models.strip_mlp import StripMLPNet

PAPER = "Strip-MLP: Efficient Token Interaction for Vision MLP (Cao et al., ICCV 2023)"

# name: (official MODEL.NAME, depths, embed dim, official params)
SIZES = {
    "strip_mlp_tiny_light": ("smlp_tiny_light_alpha3_patch4_224_imagenet1k", (2, 2, 6, 2), 80, 18_243_920),
    "strip_mlp_tiny": ("smlp_tiny_alpha3_patch4_224_imagenet1k", (2, 2, 12, 2), 80, 24_903_920),
    "strip_mlp_small": ("smlp_small_alpha3_patch4_224_imagenet1k", (2, 2, 18, 2), 96, 42_568_600),
    "strip_mlp_base": ("smlp_base_alpha3_patch4_224_imagenet1k", (2, 2, 18, 2), 112, 57_216_480),
}


def _register_all() -> None:
    for name, (_, depths, dim, count) in SIZES.items():
        dims = tuple(dim * 2**i for i in range(4))
        register_model(name, ModelSpec(StripMLPNet, dict(depths=depths, dims=dims), PAPER, count))


_register_all()
