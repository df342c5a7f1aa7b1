"""Config mistakes fail early, naming the bad value and the valid ones."""

import ml_collections
import pytest

from mixtok.data import create_eval_iterator, create_train_iterator, data_options, dataset_info


def test_unknown_source_name_lists_valid_names_and_close_matches():
    with pytest.raises(ValueError) as error:
        data_options(dict(name="digit"))
    message = str(error.value)
    assert "'digit'" in message
    assert "digits, synthetic, sample_photos, imagefolder, array_record" in message
    assert "Did you mean 'digits'" in message


def test_missing_name_lists_valid_names():
    with pytest.raises(ValueError, match="data.name is required.*digits"):
        data_options({})


def test_file_sources_need_a_root():
    with pytest.raises(ValueError, match="data.root is required"):
        dataset_info(ml_collections.ConfigDict(dict(name="imagefolder")))


def test_indivisible_batch_names_both_numbers(digits_config):
    with pytest.raises(ValueError, match="global_batch_size=10.*shard_count=4"):
        create_train_iterator(digits_config, global_batch_size=10, seed=0, shard_index=0, shard_count=4)
    with pytest.raises(ValueError, match="global_batch_size=10.*shard_count=3"):
        create_eval_iterator(digits_config, global_batch_size=10, shard_index=0, shard_count=3)


def test_bad_shard_index_and_seed_are_named(digits_config):
    with pytest.raises(ValueError, match=r"shard_index must be in \[0, 2\).*5"):
        create_train_iterator(digits_config, global_batch_size=4, seed=0, shard_index=5, shard_count=2)
    with pytest.raises(ValueError, match=r"seed.*-1"):
        create_train_iterator(digits_config, global_batch_size=4, seed=-1, shard_index=0, shard_count=1)


def test_unknown_split_lists_valid_splits(digits_config):
    digits_config.eval_split = "validation"
    with pytest.raises(ValueError, match="'validation'.*'train', 'test'"):
        create_eval_iterator(digits_config, global_batch_size=4)


def test_unknown_config_field_warns_with_a_close_match(caplog):
    data_options(dict(name="digits", crop_scal=(0.5, 1.0)))
    assert "Did you mean 'crop_scale'" in caplog.text


def test_num_classes_contradicting_the_data_is_an_error():
    config = ml_collections.ConfigDict(dict(name="digits", num_classes=100))
    with pytest.raises(ValueError, match="num_classes=100.*10 classes"):
        dataset_info(config)
