"""``veto serve``: the HTTP service with one uvicorn worker (scale with replicas)."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from prometheus_client import REGISTRY

from service.app import create_app
from veto.errors import ConfigError
from veto.settings import ServiceSettings, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veto serve", description="Run the Veto HTTP service.")
    p.add_argument("--host", default=None, help="bind address (default VETO_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default VETO_PORT or 8000)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str]) -> int:
    """Build the settings from VETO_* and the flags, then serve until stopped."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(ServiceSettings, host=args.host, port=args.port)
    except ConfigError as exc:
        print(f"veto serve: error: {exc.message}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # The default registry also carries the process and GC collectors.
    app = create_app(settings, registry=REGISTRY)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level=args.log_level,
        access_log=False,
    )
    return 0
