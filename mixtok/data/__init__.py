"""Input pipelines: grain sources, transforms and sharded batch iterators.

The trainer needs three calls, all driven by `config.data`:

    create_train_iterator(config.data, global_batch_size=..., seed=...)
    create_eval_iterator(config.data, global_batch_size=...)
    dataset_info(config.data)

See `pipeline` for sharding and checkpointing, `options` for the config
fields, `sources` for the datasets and `decode` for undecodable images;
`videos` for the video sources (clips [T, H, W, 3], batches [B, T, S, S, 3])
and `mixing` for joint image-video training steps.
"""

from mixtok.data.array_record import write_array_record
from mixtok.data.decode import UndecodableImageError, num_skipped_undecodable
from mixtok.data.mixing import image_step
from mixtok.data.options import SOURCE_NAMES, DataOptions, data_options
from mixtok.data.pipeline import (
    DatasetInfo,
    EvalBatches,
    create_eval_iterator,
    create_train_iterator,
    dataset_info,
    multi_scale_batches,
)
from mixtok.data.videos import UndecodableVideoError

__all__ = [
    "DataOptions",
    "DatasetInfo",
    "EvalBatches",
    "SOURCE_NAMES",
    "UndecodableImageError",
    "UndecodableVideoError",
    "create_eval_iterator",
    "create_train_iterator",
    "data_options",
    "dataset_info",
    "image_step",
    "multi_scale_batches",
    "num_skipped_undecodable",
    "write_array_record",
]
