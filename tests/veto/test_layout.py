"""The layout's rules: ``veto/`` is the contract both processes share, dependencies point one
way (eval and online use learn and data; learn uses neither), nothing imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    """Top-level and nested module names ``path`` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _hits(paths: list[Path], banned: tuple[str, ...]) -> list[str]:
    return [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in paths
        for name in sorted(_imports(p))
        if any(name == b or name.startswith(b + ".") for b in banned)
    ]


def test_the_contract_imports_no_process_framework_or_launcher() -> None:
    contract = [p for p in _modules("veto") if "cli" not in p.relative_to(ROOT / "veto").parts]
    assert contract, "veto/ has modules"
    banned = ("fastapi", "starlette", "torch", "subprocess", "argparse", "service", "trainer")
    assert _hits(contract, (*banned, "veto.cli")) == []


def test_only_the_command_line_imports_the_cli_package() -> None:
    outside = [*_modules("service"), *_modules("trainer")]
    outside += [p for p in _modules("veto") if "cli" not in p.relative_to(ROOT / "veto").parts]
    assert _hits(outside, ("veto.cli",)) == []


@pytest.mark.parametrize(
    ("part", "banned"),
    [
        ("trainer/learn", ("trainer.online", "trainer.eval", "trainer.data", "redis")),
        ("trainer/data", ("trainer.online", "trainer.eval", "trainer.learn", "redis")),
        ("trainer/eval", ("trainer.online", "redis")),
        ("trainer/online", ("trainer.eval",)),
        ("service", ("torch", "trainer")),
    ],
)
def test_dependencies_point_one_way(part: str, banned: tuple[str, ...]) -> None:
    assert _hits(_modules(part), banned) == []


def test_the_contract_declares_its_public_surface() -> None:
    import veto

    modules = {p.stem for p in (ROOT / "veto").glob("*.py") if p.stem != "__init__"}
    assert set(veto.__all__) == modules  # a new contract module is declared, or it fails
