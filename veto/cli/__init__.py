"""``veto`` — the command line and the one-machine stack. Nothing else imports this package.

Each subcommand's module is imported only when it is called, so ``veto serve`` never imports
torch and ``veto train`` never imports fastapi. Every command is ``main(argv) -> int``.

Exit codes, the same for every command:

    0  done
    1  a dependency failed at run time (Redis unavailable, an unreadable model version,
       a child process of ``veto up`` that died)
    2  bad usage: unknown option, bad value, bad ``VETO_*`` setting, bad input data
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Main = Callable[[list[str]], int]


def _up(argv: list[str]) -> int:
    from veto.cli.up import main

    return main(argv)


def _serve(argv: list[str]) -> int:
    from service.main import main

    return main(argv)


def _bootstrap(argv: list[str]) -> int:
    from trainer.online.bootstrap import main

    return main(argv)


def _train(argv: list[str]) -> int:
    from trainer.online.main import main

    return main(argv)


def _eval(argv: list[str]) -> int:
    from trainer.eval.main import main

    return main(argv)


def _proxy(argv: list[str]) -> int:
    from veto.cli.proxy import main

    return main(argv)


def _versions(argv: list[str]) -> int:
    from veto.cli.versions import main

    return main(argv)


COMMANDS: dict[str, tuple[Main, str]] = {
    "up": (_up, "run Redis, seed a demo model, start the service and the trainer"),
    "serve": (_serve, "run the HTTP service"),
    "bootstrap": (_bootstrap, "build the catalog and version 1 from a dataset"),
    "train": (_train, "run the trainer: fine-tune on streamed feedback and publish"),
    "eval": (_eval, "offline evaluation and responsiveness simulation"),
    "proxy": (_proxy, "balance connections over service replicas (what `up --replicas` runs)"),
    "versions": (_versions, "list model versions, publish one (rollback), prune"),
}


def _usage() -> str:
    lines = ["usage: veto COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`veto COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``veto`` script."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"veto: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return COMMANDS[name][0](rest)
