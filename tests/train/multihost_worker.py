"""One process of the two-process runs in test_multihost.py and test_multihost_preemption.py (not a test).

python -m tests.train.multihost_worker PROCESS_ID PORT WORKDIR [MODULE:FUNCTION]
    trains with `train_and_evaluate` and prints a RESULT line; MODULE:FUNCTION names a function
    returning the run's config (default: test_trainer's tiny MLP-Mixer, 4 steps).
python -m tests.train.multihost_worker PROCESS_ID PORT WORKDIR --cli CONFIG_FILE [--hold_after=K:DIR] [FLAGS...]
    runs the trainer's command line (`python -m mixtok.train --distributed ...` with this process's id, the
    loopback coordinator, CONFIG_FILE, WORKDIR and FLAGS), so the exit status and stderr are the trainer's own.
    --hold_after=K:DIR: once K steps are done, write DIR/held_<PROCESS_ID> and wait, before the next step,
    until every process has handed its step to JAX's preemption sync protocol (the test sends SIGTERM
    meanwhile), so that the stop is agreed while the run is held, whatever the machine's speed; without
    JAX's preemption service, until the test has written DIR/sigterm_sent.
"""

import importlib
import json
import os
import runpy
import sys
import time
from pathlib import Path

from tests.xla_test_flags import with_test_flags

os.environ["XLA_FLAGS"] = with_test_flags("--xla_force_host_platform_device_count=4")
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

# Where JAX's preemption sync protocol puts each process's step (openxla/xla:
# xla/tsl/distributed_runtime/preemption/preemption_sync_manager.cc, kPreemptionCounterDirKey).
_PREEMPTION_COUNTERS = "PREEMPTION_CURRENT_COUNTER/"
# If a JAX version stores them elsewhere, the hold ends after this long anyway (the stop then comes later).
_HOLD_LIMIT_S = 300


class _HeldIterator:
    """The train iterator, pausing before batch `after + 1` (see --hold_after); everything else passes through."""

    def __init__(self, iterator, after: int, marker: Path):
        self._iterator, self._after, self._marker, self._taken = iterator, after, marker, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self._taken == self._after:
            self._hold()
        self._taken += 1
        return next(self._iterator)

    def _hold(self):
        from jax._src import distributed

        self._marker.write_text(f"{self._taken} steps done\n")
        state, deadline = distributed.global_state, time.monotonic() + _HOLD_LIMIT_S
        sent = self._marker.parent / "sigterm_sent"
        while not (
            sent.exists()
            if state.preemption_sync_manager is None
            else len(state.client.key_value_dir_get(_PREEMPTION_COUNTERS)) >= jax.process_count()
        ):
            if time.monotonic() > deadline:
                print(f"multihost_worker: no preemption counters after {_HOLD_LIMIT_S} s; going on", file=sys.stderr)
                return
            time.sleep(0.05)

    def __getattr__(self, name):  # get_state, set_state, num_skipped_undecodable
        return getattr(self._iterator, name)


def _hold_after(spec: str) -> None:
    """Makes the trainer's train iterator a `_HeldIterator` (spec "K:DIR")."""
    import mixtok.data

    after, directory = spec.split(":", 1)
    create = mixtok.data.create_train_iterator

    def create_held(*args, **kwargs):
        marker = Path(directory) / f"held_{jax.process_index()}"
        return _HeldIterator(create(*args, **kwargs), int(after), marker)

    mixtok.data.create_train_iterator = create_held  # the trainer calls it as mixtok.data.create_train_iterator


def _run_cli(process_id: int, port: int, workdir: str, args: list[str]) -> None:
    config_file, *flags = args
    hold = [flag for flag in flags if flag.startswith("--hold_after=")]
    if hold:
        _hold_after(hold[0].split("=", 1)[1])
    flags = [flag for flag in flags if not flag.startswith("--hold_after=")]
    sys.argv = [
        "mixtok.train",
        "--distributed",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={process_id}",
        f"--config={config_file}",
        f"--workdir={workdir}",
        *flags,
    ]
    runpy.run_module("mixtok.train", run_name="__main__", alter_sys=True)


def main():
    process_id, port, workdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if len(sys.argv) > 5 and sys.argv[4] == "--cli":
        _run_cli(process_id, port, workdir, sys.argv[5:])
        return
    from mixtok.train.__main__ import initialize_distributed
    from mixtok.train.trainer import train_and_evaluate

    initialize_distributed(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    if len(sys.argv) > 4:
        module, function = sys.argv[4].split(":")
        config = getattr(importlib.import_module(module), function)()
    else:
        from tests.train.test_trainer import TINY_MIXER, tiny_config

        config = tiny_config(total_steps=4, log_every=1, eval_every=4, checkpoint_every=4, **TINY_MIXER)
    final = train_and_evaluate(config, workdir)
    print(
        "RESULT "
        + json.dumps(
            {
                "process": jax.process_index(),
                "processes": jax.process_count(),
                "devices": jax.device_count(),
                "final": final,
            }
        )
    )


if __name__ == "__main__":
    main()
