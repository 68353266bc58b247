"""``veto versions``: list model versions, publish one (rollback or forward), prune old ones.

    veto versions list [--json]     every version on disk, with the current one marked
    veto versions publish N         validate version N (load_version) and make it current
    veto versions prune --keep K    delete all but the newest K (never the current one)

Reads ``VETO_REDIS_URL`` and ``VETO_ARTIFACTS_DIR`` through ``CommonSettings``. Exit status:
0 done, 1 refused (the message says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from veto import registry
from veto.artifacts import prune
from veto.connection import Client, connect
from veto.errors import (
    ConfigError,
    NoModelVersion,
    StoreUnavailable,
    VetoError,
    report,
)
from veto.settings import CommonSettings, load_settings
from veto.versions import VersionRow, check_publishable, version_rows


def current_version(client: Client) -> int | None:
    """The published version, or None when none was published yet."""
    try:
        return registry.current(client)
    except NoModelVersion:
        return None


def publish_version(client: Client, root: Path, version: int) -> None:
    """Make ``version`` current if ``veto.versions.check_publishable`` allows it (nothing is
    published otherwise: UnknownVersion or ArtifactError)."""
    check_publishable(root, version)
    registry.publish(client, version)


def prune_versions(client: Client, root: Path, *, keep: int) -> list[int]:
    """Delete all but the newest ``keep`` versions, never the current one."""
    if keep < 1:
        raise ConfigError(f"--keep must be at least 1, got {keep}")
    current = current_version(client)
    return prune(root, keep=keep, protect={current} if current is not None else set())


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_rows(rows: list[VersionRow]) -> str:
    """A fixed-width table of ``rows``."""
    header = f"{'':1} {'version':>8}  {'created_at':<20}  {'items':>9}  {'index':<5}  watermark"
    lines = [header]
    for r in rows:
        mark = "*" if r.current else ""
        if r.error:
            lines.append(f"{mark:1} {r.version:>8}  unreadable: {r.error}")
            continue
        lines.append(
            f"{mark:1} {r.version:>8}  {_fmt_time(r.created_at):<20}  {r.n_items:>9}  "
            f"{r.index_type:<5}  {_fmt_time(r.watermark_ingest_time)}"
        )
    if not rows:
        lines.append("(no versions)")
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="veto versions",
        description="List model versions, publish one (rollback or forward), prune old ones. "
        "Uses VETO_REDIS_URL and VETO_ARTIFACTS_DIR.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="list versions; * marks the current one")
    ls.add_argument("--json", action="store_true", help="one JSON object per version")
    pub = sub.add_parser("publish", help="validate a version and make it current (rollback)")
    pub.add_argument("version", type=_positive_int)
    pr = sub.add_parser("prune", help="delete all but the newest K versions")
    pr.add_argument("--keep", type=_positive_int, required=True)
    return parser


def _run(args: argparse.Namespace, settings: CommonSettings, client: Client) -> int:
    root = settings.artifacts_dir
    if args.action == "list":
        try:
            current = current_version(client)
        except StoreUnavailable as exc:
            print(f"warning: current version unknown: {exc.message}", file=sys.stderr)
            current = None
        rows = version_rows(root, current)
        if args.json:
            for r in rows:
                print(json.dumps(r.__dict__))
        else:
            print(format_rows(rows))
        return 0
    if args.action == "publish":
        publish_version(client, root, args.version)
        print(f"published version {args.version}")
        return 0
    removed = prune_versions(client, root, keep=args.keep)
    print(f"removed {len(removed)} version(s): {', '.join(map(str, removed)) or '-'}")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of ``veto versions``."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(CommonSettings)
    except ConfigError as exc:
        return report("veto versions", exc)
    client = connect(settings)
    try:
        return _run(args, settings, client)
    except VetoError as exc:
        return report("veto versions", exc)
    finally:
        client.close()
