"""Ahead-of-time fit check: compile the trainer's train step for a target topology and read its memory.

    python -m mixtok.compile_check --config experiments/configs/F.py[:ARGS] --topology T \
        [--device-memory-gb G] [--config.FIELD=VALUE ...]

It builds the train step exactly as `mixtok.train` does (`mixtok/train/trainer.py` `_train`: the
task, optimizer, mesh, sharding rules, state layout and `make_train_step`) on the target's devices,
lowers it with `jax.ShapeDtypeStruct` inputs that carry the target mesh's shardings, and compiles it
without allocating the train state, as MaxText's `train_compile` does
(AI-Hypercomputer/maxtext: src/maxtext/trainers/pre_train/train_compile.py). It prints the per-device
memory that `compiled.memory_analysis()` reports and compares the total with the device's memory.
Topologies (`mixtok.topologies`): TPU slices such as `v5e-256` (needs libtpu: `pip install -e
".[tpu-aot]"`; no TPU needed), `cpu-N`, and GPU hosts such as `h100-8` (only on such a host).
docs/scale.md, "Ahead-of-time fit check", says how to read the numbers.

Config overrides behave as in `python -m mixtok.train` (the same ml_collections parser and optional
fields). Configs that state `data.num_classes` (the ImageNet configs) need no data on disk: their
sizes come from the config; others (the in-memory quickstart data) are read as the trainer reads them.

Exit codes (each failure is one line on stderr, "mixtok.compile_check: ..."):
  0  the step fits in the target's device memory (or, for cpu-N without --device-memory-gb, compiled
     and was measured: no memory to compare with)
  1  it does not fit: "does not fit: needs X GiB per device, the target has Y GiB; ..." with what to change
  2  bad input: an unknown topology (the valid forms are named), a missing config file, a bad override
     or config, a mesh that does not match the topology's device count, or a target this machine cannot
     compile for ("not supported: ...")
"""

import dataclasses
import sys

from absl import flags
from ml_collections import config_flags

PROG = "mixtok.compile_check"
EXIT_FITS, EXIT_DOES_NOT_FIT, EXIT_BAD_INPUT = 0, 1, 2
GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class MemoryUse:
    """Per-device bytes of a compiled program, from `compiled.memory_analysis()`."""

    argument: int
    output: int
    alias: int  # outputs that reuse an argument's buffer (the donated train state)
    temporary: int
    generated_code: int

    @property
    def total(self) -> int:
        """MaxText's estimate (max_utils.py `print_compiled_memory_stats`): argument + output + temp - alias."""
        return self.argument + self.output + self.temporary - self.alias

    @classmethod
    def of(cls, compiled) -> "MemoryUse":
        stats = compiled.memory_analysis()
        return cls(
            argument=stats.argument_size_in_bytes,
            output=stats.output_size_in_bytes,
            alias=stats.alias_size_in_bytes,
            temporary=stats.temp_size_in_bytes,
            generated_code=stats.generated_code_size_in_bytes,
        )


def dataset_info_for_compile(data_config):
    """The trainer's `DatasetInfo`, without reading data when the config states the class count.

    Only the class count, image size, mean and std shape the train step; the split sizes are set to 0.
    """
    from mixtok import data as data_lib

    options = data_lib.data_options(data_config)
    if options.num_classes is None:
        return data_lib.dataset_info(data_config)
    return data_lib.DatasetInfo(
        num_classes=options.num_classes,
        num_train=0,
        num_eval=0,
        image_size=options.image_size,
        mean=options.mean,
        std=options.std,
        num_frames=options.num_frames or 1,
    )


def lower_train_step(config, devices):
    """(the trainer's train step lowered for `devices`, its mesh): no array of the state is allocated.

    The same calls as `mixtok.train.trainer._train`, with the mesh built on `devices` and abstract inputs.
    With `grad_accum_steps` > 1 this is still the one-batch step: the trainer's micro-batch steps compute
    the same forward and backward, but hold one more copy of the gradients between them, not counted here.
    """
    import jax
    import numpy as np

    from mixtok.parallel import (
        DEFAULT_SHARDING_TOLERANCE,
        batch_sharding,
        check_sufficiently_sharded,
        create_mesh,
        replicated,
        rules_from_config,
    )
    from mixtok.train import steps
    from mixtok.train.config import validate_config
    from mixtok.train.tasks import DEFAULT_TASK, get_task

    validate_config(config)
    rules = rules_from_config(config.get("sharding_rules", None))
    try:
        mesh = create_mesh(config.get("mesh", None), devices=devices)
    except ValueError as error:
        raise ValueError(f"config.mesh does not fit the target's {len(devices)} devices: {error}") from None
    batch_shard = batch_sharding(mesh, rules)
    info = dataset_info_for_compile(config.data)
    task = get_task(config.get("task", DEFAULT_TASK)).from_config(config, info)
    tx, schedule = task.create_optimizer(config)
    layout = steps.abstract_train_state(task, tx, info.image_size, mesh, rules)
    # The trainer's start-up check: FSDP or tensor parallelism asked for, but the parameters mostly replicated.
    check_sufficiently_sharded(layout.params, mesh, config.get("sharding_tolerance", DEFAULT_SHARDING_TOLERANCE))
    train_step = steps.make_train_step(task, tx, schedule, layout, batch_shard, rules)

    batch_axes = batch_shard.spec[0] if batch_shard.spec else None
    batch_axes = () if batch_axes is None else (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes)
    splits = int(np.prod([mesh.shape[axis] for axis in batch_axes]))
    if config.batch_size % splits:
        raise ValueError(
            f"batch_size={config.batch_size} does not divide over the {splits} devices of the mesh axes "
            f"{batch_axes} that split the batch; use a multiple of {splits}."
        )
    batch = jax.eval_shape(lambda: task.dummy_batch(info.image_size, config.batch_size))
    batch = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=batch_shard), batch)
    rng = jax.eval_shape(lambda: steps.seed_rngs(config.seed)[1])
    rng = jax.ShapeDtypeStruct(rng.shape, rng.dtype, sharding=replicated(mesh))
    return train_step.lower(layout, batch, rng), mesh


def _human(n: float) -> str:
    """Bytes in the largest binary unit that leaves at least 1 (KiB, MiB, GiB)."""
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f} B"


def memory_table(memory: MemoryUse, device_gib: float | None, device_source: str) -> str:
    """The per-device figures, in bytes and GiB, and the device's memory with where it comes from."""
    rows = [
        ("argument", memory.argument, "train state, batch and key"),
        ("output", memory.output, "new train state and metrics"),
        ("alias", memory.alias, "outputs written over donated arguments"),
        ("temporary", memory.temporary, "activations, gradients, workspace"),
        ("total", memory.total, "argument + output + temporary - alias"),
    ]
    lines = [f"  {name:<14}{value:>18,} B  {_human(value):>12}   {note}" for name, value, note in rows]
    if device_gib is None:
        lines.append(f"  {'device':<14}{'unknown':>18}  {'':>12}   {device_source}; pass --device-memory-gb")
    else:
        device_bytes = int(device_gib * GIB)
        lines.append(f"  {'device':<14}{device_bytes:>18,} B  {_human(device_bytes):>12}   {device_source}")
    return "\n".join(lines)


def advice(config, mesh_shape: dict) -> str:
    """What would lower the memory per device under `config`'s rules, for the "does not fit" line."""
    from mixtok.parallel import rules_from_config

    rules = {}
    for name, axes in rules_from_config(config.get("sharding_rules", None)):  # the trainer's rules; first match wins
        rules.setdefault(name, (axes,) if isinstance(axes, str) else tuple(axes or ()))
    tips = [f"lower batch_size (now {config.batch_size})"]
    if "fsdp" in rules.get("embed", ()):
        tips.append(f"raise mesh.fsdp (now {mesh_shape['fsdp']}) to shard the weights and optimizer state")
    else:
        tips.append('shard the weights: a sharding rule ["embed", "fsdp"] and mesh.fsdp > 1')
    if "tensor" in rules.get("mlp", ()) + rules.get("heads", ()):
        tips.append(f"raise mesh.tensor (now {mesh_shape['tensor']}) to split MLPs and attention heads")
    if str(config.model.get("dtype", "float32")) == "float32":
        tips.append('compute in bfloat16 (config.model.dtype="bfloat16")')
    return "; ".join(tips)


def _error(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _parse(argv: list[str]):
    """(config, topology, device_memory_gb) from argv, parsed as `mixtok.train` parses its flags.

    Raises SystemExit(2) with one line on stderr for a missing config file or a bad flag or override.
    """
    from mixtok.train.command_line import (
        OverrideError,
        apply_optional_overrides,
        missing_config_file,
        override_error_message,
        pop_optional_overrides,
        without_traceback,
    )

    argv = [arg.replace("--device-memory-gb", "--device_memory_gb", 1) for arg in argv]
    try:  # the optional fields and --config.mesh.AXIS=N, which a config file need not define
        argv, optional = pop_optional_overrides(argv)
    except OverrideError as error:
        sys.exit(_error(f"error: bad config override: {error}"))
    values = flags.FlagValues()
    config_flag = config_flags.DEFINE_config_file(
        "config", None, "Path to a config file, optionally with :ARGS.", flag_values=values, sys_argv=argv
    )
    topology = flags.DEFINE_string("topology", None, "Target: v5e-8, v4-16, cpu-8, h100-8, ...", flag_values=values)
    memory = flags.DEFINE_float(
        "device_memory_gb", None, "Device memory (GiB) to check against; overrides the target's.", flag_values=values
    )
    missing = missing_config_file(argv)  # config_flags defers a missing file's error to first use
    if missing:
        sys.exit(_error(f"error: {missing}"))
    try:
        rest = values(argv)
        if len(rest) > 1:
            raise flags.Error(f"unexpected arguments: {' '.join(rest[1:])}")
        for name in ("config", "topology"):
            if values[name].value is None:
                raise flags.Error(f"--{name} is required")
        config = config_flag.value
        apply_optional_overrides(config, optional)
    except flags.Error as error:
        sys.exit(_error(f"error: {without_traceback(str(error))}"))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        sys.exit(_error(f"error: bad config override: {override_error_message(error)}"))
    if memory.value is not None and not memory.value > 0:
        sys.exit(_error(f"error: --device-memory-gb must be a positive number of GiB; got {memory.value!r}."))
    return config, topology.value, memory.value


def main(argv: list[str] | None = None) -> int:
    """The command line (module docstring); returns the exit code."""
    argv = list(sys.argv if argv is None else argv)
    try:
        config, topology_name, device_memory_gb = _parse(argv)
    except SystemExit as stop:
        return int(stop.code)
    from mixtok.topologies import UnsupportedTarget, parse_topology, target_devices

    try:
        target = parse_topology(topology_name)
    except ValueError as error:
        return _error(f"error: {error}")
    import jax

    if target.platform == "cpu":
        try:  # only before JAX's backend starts (a fresh process); else target_devices checks the count
            jax.config.update("jax_num_cpu_devices", target.num_devices)
        except RuntimeError:
            pass
    try:
        devices = target_devices(target)
    except UnsupportedTarget as error:
        return _error(str(error))

    config_name = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None) or next(
        (argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), "?"
    )
    try:
        lowered, mesh = lower_train_step(config, devices)
    except (ValueError, FileNotFoundError) as error:
        return _error(f"error: {error}")
    mesh_text = " ".join(f"{axis}={size}" for axis, size in mesh.shape.items())
    print(f"{PROG}: {config_name} on {target.name}: {target.num_devices} {target.platform} devices, mesh {mesh_text}")
    try:
        compiled = lowered.compile()
    except Exception as error:  # XlaRuntimeError; the TPU compiler refuses a program that exceeds HBM
        text = str(error)
        if "RESOURCE_EXHAUSTED" not in text:
            raise
        first = next((line for line in text.splitlines() if "RESOURCE_EXHAUSTED" in line), text.splitlines()[0])
        return _error(
            f"does not fit: the compiler ran out of device memory on {target.name} ({first.strip()[:300]}); "
            f"{advice(config, dict(mesh.shape))}.",
            EXIT_DOES_NOT_FIT,
        )

    memory = MemoryUse.of(compiled)
    device_gib, source = target.memory_gib, target.memory_source
    if device_memory_gb is not None:
        device_gib, source = device_memory_gb, "--device-memory-gb"
    print("per device, from compiled.memory_analysis():")
    print(memory_table(memory, device_gib, source))
    if device_gib is None:
        print(f"no verdict: {source}; pass --device-memory-gb to check against a memory size.")
        return EXIT_FITS
    if memory.total > device_gib * GIB:
        return _error(
            f"does not fit: needs {_human(memory.total)} per device, the target has {_human(device_gib * GIB)}; "
            f"{advice(config, dict(mesh.shape))}.",
            EXIT_DOES_NOT_FIT,
        )
    share = memory.total / (device_gib * GIB)
    print(f"fits: needs {_human(memory.total)} per device of {_human(device_gib * GIB)} ({share:.1%}).")
    return EXIT_FITS


if __name__ == "__main__":
    sys.exit(main())
