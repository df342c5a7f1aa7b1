"""Target topologies for the ahead-of-time fit check: TPU slices, simulated CPU devices, GPU hosts.

    target = parse_topology("v5e-256")      # Target(platform="tpu", num_devices=256, memory_gib=16, ...)
    devices = target_devices(target)         # compile-only devices; nothing runs on them

Names (docs/scale.md, "Ahead-of-time fit check"):

- TPU slices as Cloud TPU and MaxText name them: `v5e-N` and `v6e-N` (N chips), `v4-N` and `v5p-N`
  (N TensorCores, two per chip: `v4-16` is 8 chips). Each is a row of `TPU_SLICES`, the topology
  that `jax.experimental.topologies.get_topology_desc(platform="tpu", ...)` takes, copied from
  MaxText's table (AI-Hypercomputer/maxtext: src/maxtext/utils/accelerator_to_spec_map.py,
  `UserFacingNameToSystemCharacteristics`). They need libtpu (`pip install -e ".[tpu-aot]"`), which
  compiles for them on a machine with no TPU.
- `cpu-N`: N CPU devices of this machine (`jax_num_cpu_devices`, set before JAX's backend starts).
  They share the host's memory, so there is no per-device memory to check against unless
  `--device-memory-gb` gives one.
- GPU hosts: `h100-N`, `h200-N`, `a100-N` (xpk's device types name the memory: `h100-80gb-8`,
  `h200-141gb-8`, `a100-40gb-N`; the same long forms are accepted). JAX cannot compile for a GPU
  without one (jax-ml/jax #23971), so these need a GPU host of the same kind with N local GPUs.
"""

import dataclasses
import re

# name -> (topology_name, chip_config_name, wrap), from MaxText's accelerator_to_spec_map.py (module docstring).
# chips_per_host_bounds is (2, 2, 1) for every multi-chip slice there, (1, 1, 1) for one chip.
TPU_SLICES: dict[str, tuple[str, str, tuple[bool, bool, bool]]] = {
    **{
        f"{gen}-{n}": (f"{gen}:{shape}", "default", wrap)
        for gen in ("v5e", "v6e")
        for n, shape, wrap in (
            (1, "1x1", (False, False, False)),
            (4, "2x2", (False, False, False)),
            (8, "2x4", (False, False, False)),
            (16, "4x4", (False, False, False)),
            (32, "4x8", (False, False, False)),
            (64, "8x8", (False, False, False)),
            (128, "8x16", (False, True, False)),
            (256, "16x16", (True, True, False)),
        )
    },
    **{
        f"{gen}-{n}": (f"{prefix}:{shape}", config, wrap)
        for gen, prefix, config in (("v4", "v4", "megacore_dense"), ("v5p", "v5", "megacore"))
        for n, shape, wrap in (
            (8, "2x2x1", (False, False, False)),
            (16, "2x2x2", (False, False, False)),
            (32, "2x2x4", (False, False, False)),
            (64, "2x4x4", (False, False, False)),
            (128, "4x4x4", (True, True, True)),
            (256, "4x4x8", (True, True, True)),
            (512, "4x8x8", (True, True, True)),
            (1024, "8x8x8", (True, True, True)),
            (2048, "8x8x16", (True, True, True)),
            (4096, "8x16x16", (True, True, True)),
        )
    },
}

# HBM per chip (one JAX device per chip: v4 and v5p run their two TensorCores as one megacore device).
# docs/facts/kernels.md 2.3 (Cloud TPU docs, TPU v4 / v5e / v5p / v6e); MaxText's table comments agree.
TPU_MEMORY_GIB = {"v4": 32.0, "v5e": 16.0, "v5p": 95.0, "v6e": 32.0}
# GPU memory per device: docs/facts/kernels.md 2.1 (H100 SXM 80 GB), 2.2 (H200 141 GB); A100 as xpk's
# `a100-40gb` device type (AI-Hypercomputer/xpk: src/xpk/core/system_characteristics.py); an 80 GB A100
# is `a100-80gb-N`.
GPU_MEMORY_GIB = {"h100": 80.0, "h200": 141.0, "a100": 40.0}
GPU_MEMORY_SOURCES = {
    "h100": "H100 SXM HBM (docs/facts/kernels.md 2.1)",
    "h200": "H200 HBM (docs/facts/kernels.md 2.2)",
    "a100": 'A100 40 GB, as xpk\'s a100-40gb (docs/scale.md, "Device memory")',
}
# What JAX's device_kind says for each GPU family, to check a GPU host is the one named.
GPU_DEVICE_KINDS = {"h100": "H100", "h200": "H200", "a100": "A100"}

VALID_FORMS = (
    "TPU slices v5e-N, v6e-N (N chips: 1, 4, 8, ..., 256), v4-N, v5p-N (N TensorCores: 8, 16, ..., 4096); "
    "cpu-N (N CPU devices); GPU hosts h100-N, h200-N, a100-N (or a100-80gb-N)"
)


@dataclasses.dataclass(frozen=True)
class Target:
    """A topology to compile for: its platform, device count and, where known, memory per device."""

    name: str
    platform: str  # "tpu", "cpu" or "gpu"
    num_devices: int
    memory_gib: float | None  # per device; None for cpu-N
    memory_source: str
    family: str = ""  # "v5e", "h100", ...
    topology_name: str = ""  # TPU: what get_topology_desc takes, e.g. "v5e:2x4"
    chip_config_name: str = ""
    wrap: tuple[bool, bool, bool] = (False, False, False)


def parse_topology(name: str) -> Target:
    """The Target a topology name stands for; a ValueError naming the valid forms for any other name."""
    if name in TPU_SLICES:
        topology_name, chip_config, wrap = TPU_SLICES[name]
        family, count = name.split("-")
        chips = int(count) // (2 if family in ("v4", "v5p") else 1)
        return Target(
            name=name,
            platform="tpu",
            num_devices=chips,
            memory_gib=TPU_MEMORY_GIB[family],
            memory_source=f"{family} HBM per chip (docs/facts/kernels.md 2.3)",
            family=family,
            topology_name=topology_name,
            chip_config_name=chip_config,
            wrap=wrap,
        )
    match = re.fullmatch(r"cpu-(\d+)", name)
    if match and int(match.group(1)) > 0:
        return Target(name, "cpu", int(match.group(1)), None, "CPU devices share the host's memory", family="cpu")
    match = re.fullmatch(r"(h100|h200|a100)(?:-(\d+)gb)?-(\d+)", name)
    if match and int(match.group(3)) > 0:
        family, memory, count = match.group(1), match.group(2), int(match.group(3))
        if memory is None:
            memory_gib, source = GPU_MEMORY_GIB[family], GPU_MEMORY_SOURCES[family]
        else:
            memory_gib, source = float(memory), f"from the name {name!r}"
        return Target(name, "gpu", count, memory_gib, source, family=family)
    family = name.split("-")[0]
    sizes = sorted(int(n.split("-")[1]) for n in TPU_SLICES if n.split("-")[0] == family)
    hint = f" ({family} slices have {', '.join(map(str, sizes))})" if sizes else ""
    raise ValueError(f"unknown topology {name!r}{hint}; valid forms: {VALID_FORMS}.")


class UnsupportedTarget(Exception):
    """This machine cannot compile for the target (no libtpu, no GPU of that kind)."""


def target_devices(target: Target) -> list:
    """Devices to build the target's mesh on: compile-only TPU devices, local CPU or GPU devices.

    CPU: the backend must have at least `target.num_devices` CPU devices (the CLI sets
    `jax_num_cpu_devices` before the backend starts). Raises UnsupportedTarget when this machine
    cannot compile for the target, with the reason.
    """
    import jax

    if target.platform == "tpu":
        from jax.experimental import topologies

        try:
            topology = topologies.get_topology_desc(
                platform="tpu",
                topology_name=target.topology_name,
                chip_config_name=target.chip_config_name,
                chips_per_host_bounds=(1, 1, 1) if target.num_devices == 1 else (2, 2, 1),
                num_slices=1,
                wrap=target.wrap,
            )
        except RuntimeError as error:  # "JAX TPU support not installed; cannot generate TPU topology."
            raise UnsupportedTarget(
                f"not supported: {target.name} needs libtpu to compile for a TPU from this machine "
                f'(pip install -e ".[tpu-aot]"); JAX said: {str(error).splitlines()[0]}'
            ) from None
        return list(topology.devices)
    if target.platform == "cpu":
        devices = jax.devices("cpu")
        if len(devices) < target.num_devices:
            raise UnsupportedTarget(
                f"not supported: {target.name} needs {target.num_devices} CPU devices but JAX's backend started "
                f"with {len(devices)}; run `python -m mixtok.compile_check` in a fresh process (it sets "
                f"jax_num_cpu_devices before the backend starts)."
            )
        return devices[: target.num_devices]
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    kind = GPU_DEVICE_KINDS[target.family]
    matching = [d for d in gpus if kind in d.device_kind]
    if len(matching) < target.num_devices:
        have = f"{len(gpus)} GPU(s) ({gpus[0].device_kind})" if gpus else "no GPU"
        raise UnsupportedTarget(
            f"not supported: {target.name} needs a GPU host of the same kind with {target.num_devices} local "
            f"{kind} GPUs (JAX cannot compile for a GPU it does not have: jax-ml/jax #23971); this machine has "
            f"{have}. Compile on such a host, or check with cpu-{target.num_devices} and --device-memory-gb "
            f"{target.memory_gib:g}."
        )
    return matching[: target.num_devices]
