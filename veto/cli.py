"""``veto`` — one entry point, one module per subcommand, imported only when called, so
``veto serve`` never imports torch and ``veto train`` never imports fastapi.

Each module exposes ``main(argv: list[str]) -> int`` with its own argparse parser.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("veto.up", "run Redis, seed a demo model, start the service and the trainer"),
    "serve": ("service.main", "run the HTTP service"),
    "bootstrap": ("trainer.bootstrap", "build the catalog and version 1 from a dataset"),
    "train": ("trainer.loop", "run the trainer: fine-tune on streamed feedback and publish"),
    "eval": ("trainer.evaluate", "offline evaluation and responsiveness simulation"),
    "versions": ("veto.versions", "list model versions, publish one (rollback), prune"),
}


def _usage() -> str:
    lines = ["usage: veto COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`veto COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"veto: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    code: int = module.main(rest)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
