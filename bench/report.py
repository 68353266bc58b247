"""Benchmark results: each figure next to its reference and their ratio, one JSON file per
benchmark under bench/results/, and the Markdown summary table of a run."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import machine, write_json

RESULTS = Path(__file__).parent / "results"


class Skipped(Exception):
    """A benchmark that cannot run here (a missing tool); reported, not a failure."""


@dataclass(frozen=True)
class Figure:
    """One measured value, the reference it is compared with, and an optional aim."""

    label: str
    value: float
    unit: str
    reference_label: str
    reference: float
    aim: str = ""
    passed: bool | None = None

    @property
    def ratio(self) -> float | None:
        """value / reference (None when the reference is 0 or not finite)."""
        if not self.reference or not math.isfinite(self.reference):
            return None
        return round(self.value / self.reference, 3)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}

    @classmethod
    def must_be_zero(cls, label: str, value: float) -> Figure:
        """A count that must stay 0 (failed requests, disliked items served)."""
        return cls(label, value, "", "must be", 0.0, aim="0", passed=value == 0)


def machine_info() -> dict[str, Any]:
    """bench.common's machine description plus RAM and the git commit."""
    info = machine()
    info["ram_gb"] = _ram_gb()
    info["git_commit"] = _git_commit()
    return info


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)  # kB -> GiB
    except OSError:
        pass
    return None


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def save(
    name: str,
    figures: list[Figure],
    *,
    details: dict[str, Any],
    command: str,
    out_dir: Path = RESULTS,
    machine_desc: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/<name>.json``: figures with ratios, details, machine, command."""
    path = out_dir / f"{name}.json"
    write_json(
        path,
        {
            "name": name,
            "figures": [f.to_json() for f in figures],
            "details": details,
            "machine": machine_desc or machine_info(),
            "command": command,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    return path


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def load_all(out_dir: Path = RESULTS) -> list[dict[str, Any]]:
    """Every result this harness wrote under ``out_dir`` (files with ``figures``), by name."""
    docs = []
    for path in sorted(out_dir.glob("*.json")):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and isinstance(doc.get("figures"), list):
            docs.append(doc)
    return docs


def summary_markdown(docs: list[dict[str, Any]]) -> str:
    """The table the README shows, then the machine and each benchmark's command."""
    lines = [
        "| Benchmark | Figure | Measured | Reference | Ratio | Aim |",
        "|---|---|---:|---|---:|---|",
    ]
    for doc in docs:
        for raw in doc["figures"]:
            f = raw
            ref = f"{f['reference_label']}: {_fmt(f['reference'], f['unit'])}"
            aim = f["aim"]
            if f["passed"] is not None:
                aim = f"{aim} {'(met)' if f['passed'] else '(missed)'}".strip()
            ratio = "–" if f["ratio"] is None else f"{f['ratio']:.3g}"
            lines.append(
                f"| {doc['name']} | {f['label']} | {_fmt(f['value'], f['unit'])} | {ref} "
                f"| {ratio} | {aim} |"
            )
    if docs:
        m = max(docs, key=lambda d: str(d["finished_at"]))["machine"]
        lines += [
            "",
            f"Machine: {m.get('cpu_count')} CPUs ({m.get('cpu_model')}), {m.get('ram_gb')} GiB "
            f"RAM, Python {m.get('python')}, {m.get('platform')}; commit {m.get('git_commit')}.",
            "",
            "| Benchmark | Finished (UTC) | Load average at start | Command |",
            "|---|---|---|---|",
        ]
        for doc in docs:
            load = [round(x, 2) for x in doc["machine"].get("loadavg_at_start") or []]
            lines.append(f"| {doc['name']} | {doc['finished_at']} | {load} | `{doc['command']}` |")
    return "\n".join(lines) + "\n"
