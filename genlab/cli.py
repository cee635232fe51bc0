"""`genlab <command> [hydra overrides]`: dispatch to the command's Hydra app.

Kept free of heavy imports so that `genlab --help` answers at once. Each command module has
its own `@hydra.main` and a `__main__` guard; the dispatcher points `sys.argv[0]` at that
module's file, so when Lightning's DDP launcher re-runs `sys.argv` for its other processes
they re-enter the same command.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import os
import sys
import threading
from pathlib import Path

COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": (
        "genlab.commands.train",
        "fit a model, with checkpoints and TensorBoard image grids",
        "genlab train model=conv_ae data=mnist trainer.max_epochs=5",
    ),
    "sample": (
        "genlab.commands.sample",
        "decode draws from a checkpoint's prior (or its 2-D manifold) into a PNG grid",
        "genlab sample ckpt=outputs/train/DATE/TIME/checkpoints/last.ckpt n=64",
    ),
    "interpolate": (
        "genlab.commands.interpolate",
        "decode paths between pairs of images' codes or random latents",
        "genlab interpolate ckpt=PATH steps=10 method=slerp",
    ),
    "arithmetic": (
        "genlab.commands.arithmetic",
        "add an attribute vector (mean code of one set minus another) to images' codes",
        "genlab arithmetic ckpt=PATH plus.label=7 minus.label=1 apply.label=1",
    ),
    "embed": (
        "genlab.commands.embed",
        "encode a split; write the codes and a scatter plot coloured by class",
        "genlab embed ckpt=PATH method=tsne",
    ),
    "evaluate": (
        "genlab.commands.evaluate",
        "metrics of a checkpoint: reconstruction, VAE log-likelihood, FID/KID, linear probe",
        "genlab evaluate ckpt=PATH features=CLASSIFIER.ckpt probe=true",
    ),
    "anomaly": (
        "genlab.commands.anomaly",
        "score every test image by reconstruction error; histogram, ROC and AUROC",
        "genlab anomaly ckpt=PATH",
    ),
    "report": (
        "genlab.commands.report",
        "compare the jobs of a sweep (or one run): table, metric plots, best image grid",
        "genlab report outputs/multirun/train/DATE/TIME",
    ),
    "translate": (
        "genlab.commands.translate",
        "translate an image or a folder with a Pix2Pix or CycleGAN checkpoint",
        "genlab translate ckpt=PATH input=photos/ direction=AtoB",
    ),
    "prepare-data": (
        "genlab.commands.prepare_data",
        "write a folder of images once as shards that data=streaming trains from",
        "genlab prepare-data data=folder data.root=DIR out=SHARDS data.image_size=64",
    ),
}

USAGE_TAIL = """\
Every command is a Hydra app: add `--help` after the command for its config groups,
`--cfg job` to print the composed config, `-m` for a multirun sweep, e.g.
  genlab train -m model=ae,sparse_ae model.latent_dim=2,16
`--quiet` after the command drops its progress bars and the line before each long phase.
Tab completion of commands, config groups and keys (bash, zsh):
  eval "$(genlab -sc install=bash)"
"""

COMPLETION_FLAGS = ("-sc", "--shell-completion")
# Hydra options that print something and create no run directory.
NO_RUN_DIR_FLAGS = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "--version")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: genlab <command> [hydra overrides...]", "", "commands:"]
    for name, (_, summary, example) in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {summary}")
        lines.append(f"  {'':<{width}}    e.g. {example}")
    return "\n".join(lines) + "\n\n" + USAGE_TAIL


def accepted_groups(command: str) -> set[str]:
    """The config groups a command's primary config names in its defaults list: the ones
    its help and tab completion offer (train takes model=, sample does not)."""
    from omegaconf import OmegaConf

    from genlab.commands.common import CONFIG_DIR

    groups = set()
    for entry in OmegaConf.load(Path(CONFIG_DIR) / f"{command}.yaml").get("defaults", []):
        name = next(iter(entry)) if not isinstance(entry, str) else entry
        name = str(name).removeprefix("override ").removeprefix("optional ")
        if name != "_self_":
            groups.add(name.split("@")[0].split("/")[0].strip())
    return groups


def _offered(word: str, hidden: set[str]) -> bool:
    """Whether a help line or completion word belongs to a group the command accepts."""
    head = word.split("=")[0].split(":")[0].lstrip("+~").split("/")[0]
    return head not in hidden


def hidden_groups(command: str) -> set[str]:
    """The config groups of the config folder that ``command`` does not take."""
    from genlab.commands.common import CONFIG_DIR

    return {p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir()} - accepted_groups(command)


def _run_app(command: str, args: list[str], *, argv0: str | None = None) -> None:
    module = importlib.import_module(COMMANDS[command][0])
    sys.argv = [argv0 or module.__file__, *args]
    if "--help" not in args and "-h" not in args:
        module.main()
        return
    # Hydra's help lists every group of the config folder; keep the ones this command takes.
    hidden = hidden_groups(command)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            module.main()
    finally:
        lines = captured.getvalue().splitlines(keepends=True)
        print("".join(line for line in lines if _offered(line, hidden)), end="")


def complete(args: list[str]) -> int:
    """Shell completion for `genlab <command> ...`: the command word is completed here; the
    rest is Hydra's, given the line without the command word, as if `genlab <command>`
    were one program."""
    request = args[1] if len(args) > 1 else ""
    if not request.startswith("query="):
        # install / uninstall: Hydra's script, registered for the `genlab` executable.
        _run_app("train", args, argv0="genlab")
        return 0
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    completing_command = len(words) < 2 or (len(words) == 2 and not line.endswith(" "))
    if completing_command:
        prefix = words[1] if len(words) == 2 else ""
        print(" ".join(name for name in COMMANDS if name.startswith(prefix)))
        return 0
    if words[1] not in COMMANDS:
        return 0
    os.environ["COMP_LINE"] = line.replace(f" {words[1]}", "", 1)
    hidden = hidden_groups(words[1])
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        _run_app(words[1], args, argv0="genlab")
    print(" ".join(w for w in captured.getvalue().split() if _offered(w, hidden)))
    return 0


def _override(args: list[str], key: str) -> str | None:
    """The value the command line gives ``key`` (``key=V``, ``+key=V``, ``++key=V``), the
    last one winning, without quotes; None when it gives none."""
    value = None
    for arg in args:
        name, sep, given = arg.lstrip("+").partition("=")
        if sep and name == key:
            value = given.strip("'\"")
    return value


def run_dir_problem(command: str, args: list[str], cwd: Path | None = None) -> str | None:
    """Why the run directory of ``genlab COMMAND ARGS`` cannot be created, or None.

    Hydra creates it before genlab runs, and fails there with a traceback; checked here, the
    user gets one line and torch is not even imported. The folder is
    ``outputs/<command>`` (``outputs/multirun/<command>`` for -m) under the current one,
    or what hydra.run.dir (hydra.sweep.dir) names up to its first ${...}; its nearest
    existing parent must be a writable folder."""
    if any(arg in NO_RUN_DIR_FLAGS for arg in args):
        return None
    multirun = "-m" in args or "--multirun" in args
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = _override(args, key)
    if given is None:
        folder = Path("outputs", "multirun", command) if multirun else Path("outputs", command)
    else:
        folder = Path(given.split("${")[0] or ".").expanduser()
    folder = (cwd or Path.cwd()) / folder
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        reason = f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing} is not writable (permission denied)"
    else:
        return None
    return (
        f"cannot create the run directory under {folder}: {reason}; run genlab from a "
        f"writable folder or pass {key}=DIR"
    )


def with_resumed_run_dir(command: str, args: list[str]) -> list[str]:
    """``genlab train resume=RUN_DIR`` continues in RUN_DIR: Hydra is told to use it as the
    run directory (its train.log is appended to), unless hydra.run.dir is given."""
    resume = _override(args, "resume") if command == "train" else None
    if not resume or _override(args, "hydra.run.dir") is not None:
        return args
    return [*args, f"hydra.run.dir={Path(resume).expanduser().resolve()}"]


def resume_problem(command: str, args: list[str]) -> str | None:
    """Why ``genlab train resume=RUN_DIR`` cannot resume, checked before Hydra would create
    RUN_DIR as the run directory of a run that then fails; None when it can."""
    resume = _override(args, "resume") if command == "train" else None
    if not resume:
        return None
    from genlab.commands.resume import last_checkpoint_of
    from genlab.errors import GenlabError

    try:
        last_checkpoint_of(Path(resume).expanduser())
    except GenlabError as exc:
        return str(exc)
    return None


def with_report_dir(command: str, args: list[str]) -> list[str]:
    """``genlab report DIR``: a word that is neither an option nor an override is
    ``dir=DIR``, quoted for Hydra (a path may hold commas or spaces)."""
    if command != "report":
        return args
    words = []
    for arg in args:
        if arg.startswith("-") or "=" in arg:
            words.append(arg)
        else:
            quoted = arg.replace("'", "\\'")
            words.append(f"dir='{quoted}'")
    return words


# Commands that write into folders they are given, not into a run directory of their own.
NO_RUN_DIR_COMMANDS = ("report",)

# Config options that come from optional plugins: the module each needs, and the extra of
# genlab that installs it (pyproject.toml).
PLUGIN_OPTIONS: dict[str, tuple[str, str, str]] = {
    "data=streaming": ("webdataset", "WebDataset", "streaming"),
    "hydra/sweeper=optuna": ("optuna", "Optuna", "sweep"),
    "hydra/launcher=joblib": (
        "hydra_plugins.hydra_joblib_launcher",
        "hydra-joblib-launcher",
        "sweep",
    ),
    "hydra/launcher=submitit_local": (
        "hydra_plugins.hydra_submitit_launcher",
        "hydra-submitit-launcher",
        "slurm",
    ),
    "hydra/launcher=submitit_slurm": (
        "hydra_plugins.hydra_submitit_launcher",
        "hydra-submitit-launcher",
        "slurm",
    ),
    "hydra/launcher=slurm": (
        "hydra_plugins.hydra_submitit_launcher",
        "hydra-submitit-launcher",
        "slurm",
    ),
}


def missing_plugin(args: list[str]) -> str | None:
    """What to install for a sweeper or launcher the command line picks, when its plugin is
    missing (Hydra itself would only say it "could not find" the option); else None."""
    import importlib.util

    for arg in args:
        needed = PLUGIN_OPTIONS.get(arg.removeprefix("override ").lstrip("+"))
        if needed is None:
            continue
        module, package, extra = needed
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{arg} needs {package}, which is not installed: pip install 'genlab[{extra}]'"
    return None


QUIET_FLAG = "--quiet"


def with_quiet(command: str, args: list[str]) -> list[str]:
    """``genlab COMMAND --quiet`` as the override that silences the command's progress:
    ``quiet=true`` (its announcements and bars), for train Lightning's own bar. Hydra
    knows no such flag, so it is translated here, wherever it stands after the command."""
    if QUIET_FLAG not in args:
        return args
    override = "trainer.enable_progress_bar=false" if command == "train" else "quiet=true"
    return [arg for arg in args if arg != QUIET_FLAG] + [override]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in COMPLETION_FLAGS:
        return complete(args)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"genlab: unknown command {command!r}\n", file=sys.stderr)
        print(usage(), end="", file=sys.stderr)
        return 2
    rest = with_quiet(command, with_resumed_run_dir(command, with_report_dir(command, rest)))
    problem = None if command in NO_RUN_DIR_COMMANDS else run_dir_problem(command, rest)
    problem = missing_plugin(rest) or resume_problem(command, rest) or problem
    if problem is not None:
        print(f"genlab {command}: error: {problem}", file=sys.stderr)
        return 1
    from genlab.tuning import tune_allocator

    tune_allocator()  # faster CPU steps; GENLAB_MALLOC_TUNING=0 leaves glibc as it is
    _run_app(command, rest)
    return 0


# Set to 0 to leave the interpreter the usual way (its teardown runs).
FAST_EXIT = "GENLAB_FAST_EXIT"


def _has_live_children() -> bool:
    """Whether this process has child processes still running (Linux's /proc); True where
    that cannot be told, so the exit is then the usual one."""
    try:
        tasks = Path(f"/proc/{os.getpid()}/task").iterdir()
        return any((task / "children").read_text().split() for task in tasks)
    except OSError:
        return True


def run() -> None:
    """The `genlab` console script: ``main``, then an exit without the interpreter's
    teardown. Once torch and Lightning (with torchmetrics, scipy and matplotlib) are
    loaded, freeing their thousands of modules one by one takes one to two seconds after the
    work is done. Everything that must happen at exit still does: the atexit handlers run
    (logging's flush and close, multiprocessing's worker shutdown, ...), stdout and stderr
    are flushed, and every file genlab writes was complete before ``main`` returned.
    ``GENLAB_FAST_EXIT=0`` exits the usual way. An exception other than SystemExit (a
    traceback, Ctrl-C) leaves the usual way too."""
    try:
        code: int | str | None = main()
    except SystemExit as exc:
        code = exc.code
    # The interpreter's own order at exit: threads first (threading's exit hooks, such as
    # concurrent.futures' and joblib's executors, then joining the non-daemon threads),
    # then the atexit handlers; only the teardown of modules after them is skipped.
    join_threads = getattr(threading, "_shutdown", None)
    exit_now = getattr(atexit, "_run_exitfuncs", None)
    usual = os.environ.get(FAST_EXIT, "1") == "0" or exit_now is None or join_threads is None
    if usual or _has_live_children():
        # Processes this one started (DDP ranks, launcher workers) may still need it while
        # they finish: the usual exit, which has always let them.
        sys.exit(code)
    if isinstance(code, str):  # sys.exit("message") prints it and exits 1
        print(code, file=sys.stderr)
        code = 1
    join_threads()
    exit_now()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    run()
