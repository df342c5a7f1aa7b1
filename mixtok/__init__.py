"""mixtok: vision token mixers and visual tokenizers in JAX/Flax (linen).

Entry points:
  mixtok.mixers.get(name)            a token mixer class by name
  mixtok.models.create_model(name)   a named backbone (poolformer_s12, caformer_s18, ...)
  python -m mixtok.train --config experiments/configs/quickstart.py --workdir DIR
"""

__version__ = "0.1.0"
