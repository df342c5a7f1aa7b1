"""Launchers: start `python -m mixtok.train` as a multi-host run on this machine, a TPU pod, SLURM or GKE.

    python -m mixtok.launch {local,tpu,slurm,gke} [launcher options] -- <trainer args>

One module per kind of cluster (`local`, `tpu`, `slurm`, `gke`), each with `add_arguments(parser)`
and `run(options, trainer) -> exit status`; `common` holds what they share. launch/README.md says
what each needs and does.
"""
