"""Command line: python -m mixtok.launch {local,tpu,slurm,gke} [launcher options] -- <trainer args>.

Everything after `--` is passed to `python -m mixtok.train` unchanged (`--config FILE[:ARGS]`,
`--workdir DIR`, `--config.FIELD=VALUE`, ...); the launcher adds `--distributed` and, where JAX cannot
detect the cluster, the coordinator flags. `--dry-run` prints what would run, one command per line.

Exit status:
  0    the run (or the submission) succeeded; always after --dry-run
  2    bad input, found before anything started: one line on stderr, "mixtok.launch: error: ...".
       An unknown kind, a missing or non-existent config, no --workdir, a relative path or non-gs:// URL as workdir
       for a multi-host run, a count below 1, a missing pod / cluster name, a client tool (gcloud, sbatch, xpk)
       not installed.
  else local: the first non-zero status of a trainer process (143: preempted after saving, 128 + S: killed
       by signal S); tpu / slurm / gke: the status of gcloud, sbatch or xpk.
"""

import sys

from mixtok.launch import gke, local, slurm, tpu
from mixtok.launch.common import PROG, ArgumentParser, LaunchError, parse_trainer_args

KINDS = {"local": local, "tpu": tpu, "slurm": slurm, "gke": gke}
USAGE = f"python -m {PROG} {{{','.join(KINDS)}}} [launcher options] -- <trainer args>"


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    launcher_argv, trainer_argv = argv[:split], argv[split + 1 :]
    if launcher_argv[:1] in (["-h"], ["--help"]):
        print(f"usage: {USAGE}\n\n" + "\n".join(f"  {name:6} {module.HELP}" for name, module in KINDS.items()))
        print(f"\n{PROG} KIND --help lists a kind's options; launch/README.md has examples.")
        return 0
    if not launcher_argv:
        raise LaunchError(f"no cluster kind; usage: {USAGE}")
    kind = launcher_argv[0]
    if kind not in KINDS:
        raise LaunchError(f"unknown cluster kind {kind!r}; valid kinds: {', '.join(KINDS)}.")
    usage = "%(prog)s [options] -- <trainer args>"
    parser = ArgumentParser(prog=f"{PROG} {kind}", description=KINDS[kind].HELP, usage=usage)
    KINDS[kind].add_arguments(parser)
    options, unknown = parser.parse_known_args(launcher_argv[1:])
    if unknown:
        raise LaunchError(
            f"unknown {kind} option(s) {' '.join(unknown)!r}; the trainer's arguments go after '--' "
            f"(`{PROG} {kind} --help` lists the launcher's)."
        )
    trainer = parse_trainer_args(trainer_argv)
    return KINDS[kind].run(options, trainer)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except LaunchError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(2)
