"""`genlab <command> [hydra overrides]`: dispatch to the command's Hydra app.

Kept free of heavy imports so that `genlab --help` answers at once. Each command module has
its own `@hydra.main` and a `__main__` guard; the dispatcher points `sys.argv[0]` at that
module's file, so when Lightning's DDP launcher re-runs `sys.argv` for its other processes
they re-enter the same command.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": (
        "genlab.commands.train",
        "fit a model, with checkpoints and TensorBoard image grids",
        "genlab train model=conv_ae data=mnist trainer.max_epochs=5",
    ),
}

USAGE_TAIL = """\
Every command is a Hydra app: add `--help` after the command for its config groups,
`--cfg job` to print the composed config, `-m` for a multirun sweep, e.g.
  genlab train -m model=ae,sparse_ae model.latent_dim=2,16
"""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: genlab <command> [hydra overrides...]", "", "commands:"]
    for name, (_, summary, example) in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {summary}")
        lines.append(f"  {'':<{width}}    e.g. {example}")
    return "\n".join(lines) + "\n\n" + USAGE_TAIL


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"genlab: unknown command {command!r}\n", file=sys.stderr)
        print(usage(), end="", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    sys.argv = [module.__file__, *rest]
    module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
