"""``veto up``: the whole system on one machine, for ``make run``.

    Redis (embedded child, or --redis-url)
      → veto bootstrap --dataset synthetic --items N --if-empty   (one-shot child)
      → veto serve --port P                                        (child; --replicas 1)
        or veto serve --port A, --port B, ... (service-1..N)       (children; --replicas N)
           and veto proxy --port P --upstream :A --upstream :B ... (child: the one address)
      → veto train --metrics-port P2                               (child, unless --no-trainer)
      → prometheus (child, with --with-prometheus and the binary on PATH; scrapes each replica)
      → wait for GET /readyz (of every replica and the proxy), print the URLs (the console
        first) and the API key, supervise.

Ctrl-C or SIGTERM stops the children newest first (SIGTERM, then SIGKILL after
--stop-timeout) and exits 0. A child that dies on its own, a replica included, stops the
others and exits 1, naming it: on one machine a crashed replica is a bug to see, not to hide
(the compose stack restarts its containers instead).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from veto.cli import promconfig
from veto.cli.redis_server import RedisServer, free_port, port_free
from veto.cli.supervisor import Child, StopRequest, child_env, start_child, stop_all, wait_until
from veto.errors import ConfigError, VetoError, report
from veto.settings import ServiceSettings, TrainerSettings, load_settings

MAX_REPLICAS = 16


@dataclass(frozen=True)
class Plan:
    """What ``veto up`` will run, resolved from the options before anything starts.

    ``replica_ports`` is ``(port,)`` for one replica (it listens on --port itself); for
    more, each replica has its own free port and ``veto proxy`` listens on ``port``."""

    port: int
    replica_ports: tuple[int, ...]
    trainer_port: int | None
    prometheus_port: int | None
    data_dir: Path
    redis_url: str | None
    items: int
    api_key: str
    api_key_generated: bool

    @property
    def proxied(self) -> bool:
        """More than one replica: ``veto proxy`` owns --port."""
        return self.replica_ports != (self.port,)


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def _items(text: str) -> int:
    value = int(text)
    if value < 10:
        raise argparse.ArgumentTypeError(f"--items must be at least 10, got {value}")
    return value


def _replicas(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_REPLICAS:
        raise argparse.ArgumentTypeError(
            f"--replicas must be between 1 and {MAX_REPLICAS}, got {value}"
        )
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="veto up",
        description="Run Veto on one machine: Redis, a seeded demo model, the service, the "
        "trainer (and Prometheus), until Ctrl-C.",
    )
    p.add_argument("--port", type=_port, default=8000, help="HTTP port of the service (8000)")
    p.add_argument(
        "--replicas",
        type=_replicas,
        default=1,
        help=f"service processes (1..{MAX_REPLICAS}); above 1 each gets its own port and "
        "`veto proxy` balances them on --port (1)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var"),
        help="Redis data, model versions, Prometheus data (./var)",
    )
    p.add_argument(
        "--redis-url",
        default=None,
        help="use this Redis instead of starting one (default: $VETO_REDIS_URL, else embedded)",
    )
    p.add_argument(
        "--items", type=_items, default=10_000, help="synthetic demo catalog size (10000)"
    )
    p.add_argument("--no-trainer", action="store_true", help="serve the seeded model only")
    p.add_argument(
        "--trainer-metrics-port",
        type=_port,
        help="trainer /metrics port (default: --port + 1 if free)",
    )
    p.add_argument("--with-prometheus", action="store_true", help="also run a Prometheus server")
    p.add_argument(
        "--prometheus-port", type=_port, default=9090, help="with --with-prometheus (9090)"
    )
    p.add_argument("--scrape-interval", type=float, default=5.0, help="Prometheus, seconds (5)")
    p.add_argument(
        "--ready-timeout", type=float, default=300.0, help="seconds for bootstrap and /readyz (300)"
    )
    p.add_argument(
        "--stop-timeout", type=float, default=10.0, help="seconds from SIGTERM to SIGKILL (10)"
    )
    return p


def make_plan(args: argparse.Namespace, settings: ServiceSettings) -> Plan:
    """Resolve ports, Redis and the API key from the flags over ``settings`` (the
    environment); ConfigError if a port is taken."""
    trainer_port = None
    if not args.no_trainer:
        trainer_port = args.trainer_metrics_port
        if trainer_port is None:  # next to the service when that port is free
            trainer_port = args.port + 1 if port_free(args.port + 1) else free_port()
    prometheus_port = args.prometheus_port if args.with_prometheus else None
    wanted = {"--port": args.port, "trainer metrics port": trainer_port}
    wanted["--prometheus-port"] = prometheus_port
    ports = [p for p in wanted.values() if p is not None]
    if len(set(ports)) != len(ports):
        raise ConfigError(f"ports must differ: {wanted}")
    replica_ports = (args.port,) if args.replicas == 1 else _free_ports(args.replicas, set(ports))
    for what, port in wanted.items():
        if port is not None and not port_free(port):
            raise ConfigError(f"{what} {port} is already in use on 127.0.0.1")
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    # An explicit VETO_REDIS_URL is used; the default URL is not: Redis is embedded then.
    env_redis = settings.redis_url if "redis_url" in settings.model_fields_set else None
    return Plan(
        port=args.port,
        replica_ports=replica_ports,
        trainer_port=trainer_port,
        prometheus_port=prometheus_port,
        data_dir=args.data_dir.resolve(),
        redis_url=args.redis_url or env_redis,
        items=args.items,
        api_key=key or secrets.token_urlsafe(24),
        api_key_generated=not key,
    )


def _free_ports(count: int, taken: set[int]) -> tuple[int, ...]:
    """``count`` distinct free ports outside ``taken``."""
    found: list[int] = []
    while len(found) < count:
        port = free_port()
        if port not in taken and port not in found:
            found.append(port)
    return tuple(found)


def _veto(*args: str) -> list[str]:
    # The same interpreter as ours, so the children see the same installation.
    return [sys.executable, "-m", "veto.cli", *args]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _say(text: str) -> None:
    print(text, flush=True)


def _banner(plan: Plan, redis_url: str) -> str:
    api = f"http://127.0.0.1:{plan.port}"
    lines = [
        "",
        "Veto is up.",
        f"  Console:          {api}/console/   (open it in a browser)",
        f"  API:              {api}/v1/users/<user_id>/recommendations",
        f"  OpenAPI docs:     {api}/docs   (and {api}/redoc; no internet needed)",
    ]
    if plan.proxied:
        replicas = [f"http://127.0.0.1:{port}" for port in plan.replica_ports]
        lines.append(f"  Replicas:         {' '.join(replicas)}   (veto proxy on {api})")
        lines.append("  Service metrics:  <replica>/metrics, one per replica")
    else:
        lines.append(f"  Service metrics:  {api}/metrics")
    if plan.trainer_port is not None:
        lines.append(f"  Trainer metrics:  http://127.0.0.1:{plan.trainer_port}/metrics")
    if plan.prometheus_port is not None:
        lines.append(f"  Prometheus:       http://127.0.0.1:{plan.prometheus_port}")
    lines.append(f"  Redis:            {_hide_password(redis_url)}")
    lines.append(f"  Data dir:         {plan.data_dir}")
    if plan.api_key_generated:
        lines.append(
            f"  API key:          {plan.api_key}   (header X-API-Key, for writes; the console asks)"
        )
    else:
        lines.append("  API key:          from $VETO_API_KEY (header X-API-Key, for writes)")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def _hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.split('@', 1)[1]}"


class _ChildDied(Exception):
    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.name} exited unexpectedly with status {child.process.poll()}")


def main(argv: list[str]) -> int:
    """Entry point of ``veto up``."""
    args = _parser().parse_args(argv)
    stop = StopRequest()
    stop.install()
    try:
        # Both processes' settings, validated before anything starts (children inherit them).
        settings = load_settings(ServiceSettings)
        load_settings(TrainerSettings)
        plan = make_plan(args, settings)
    except VetoError as exc:
        return report("veto up", exc)
    redis: RedisServer | None = None
    children: list[Child] = []
    try:
        redis_url = plan.redis_url
        if redis_url is None:
            # Own session: a Ctrl-C reaches only us, and Redis is stopped last.
            redis = RedisServer(
                data_dir=plan.data_dir / "redis", port=free_port(), new_session=True
            ).start()
            redis_url = redis.url
            _say(f"veto up: started Redis on {redis_url} (data in {redis.data_dir})")
        # The embedded Redis is watched like the other children, but stopped last.
        watched = [Child("redis", redis.process)] if redis and redis.process else []
        _supervise(plan, redis_url, stop=stop, children=children, watched=watched, args=args)
        return 0
    except _ChildDied as exc:
        print(f"veto up: {exc}; stopping the others", file=sys.stderr)
        return 1
    except (VetoError, TimeoutError) as exc:
        message = exc.message if isinstance(exc, VetoError) else str(exc)
        print(f"veto up: {message}", file=sys.stderr)
        return 1
    finally:
        stop_all(children, timeout=args.stop_timeout)
        if redis is not None:
            redis.stop(timeout=args.stop_timeout)
        if stop:
            _say("veto up: stopped")


def _supervise(
    plan: Plan,
    redis_url: str,
    *,
    stop: StopRequest,
    children: list[Child],
    watched: list[Child],
    args: argparse.Namespace,
) -> None:
    """Bootstrap, start service, trainer and Prometheus, wait for ready, then until a stop."""
    env = child_env(
        {
            "VETO_REDIS_URL": redis_url,
            "VETO_ARTIFACTS_DIR": str(plan.data_dir / "artifacts"),
            "VETO_API_KEY": plan.api_key,
        }
    )
    bootstrap = start_child(
        "bootstrap",
        _veto("bootstrap", "--dataset", "synthetic", "--items", str(plan.items), "--if-empty"),
        env=env,
    )
    children.append(bootstrap)
    dead = wait_until(
        lambda: not bootstrap.alive,
        children=watched,
        stop=stop,
        timeout=args.ready_timeout,
        what="bootstrap (raise --ready-timeout for a large --items)",
    )
    if dead is not None:
        raise _ChildDied(dead)
    if stop:
        return
    children.remove(bootstrap)
    if bootstrap.process.returncode != 0:
        raise _ChildDied(bootstrap)
    _start_service(plan, children=children, env=env)
    if plan.trainer_port is not None:
        argv = _veto("train", "--metrics-port", str(plan.trainer_port))
        children.append(start_child("trainer", argv, env=env))
    if plan.prometheus_port is not None:
        _start_prometheus(plan, args.scrape_interval, children=children, env=env)
    # Ready = every replica (and the proxy in front) answers /readyz and the trainer (if any)
    # serves its metrics.
    ready_urls = [f"http://127.0.0.1:{port}/readyz" for port in plan.replica_ports]
    if plan.proxied:
        ready_urls.append(f"http://127.0.0.1:{plan.port}/readyz")
    if plan.trainer_port is not None:
        ready_urls.append(f"http://127.0.0.1:{plan.trainer_port}/metrics")
    dead = wait_until(
        lambda: all(_ready(url) for url in ready_urls),
        children=[*watched, *children],
        stop=stop,
        timeout=args.ready_timeout,
        what=" and ".join(f"GET {url}" for url in ready_urls),
    )
    if dead is not None:
        raise _ChildDied(dead)
    if stop:
        return
    _say(_banner(plan, redis_url))
    everyone = [*watched, *children]
    dead = wait_until(lambda: False, children=everyone, stop=stop, timeout=float("inf"))
    if dead is not None and not stop:
        raise _ChildDied(dead)


def _start_service(plan: Plan, *, children: list[Child], env: dict[str, str]) -> None:
    """One ``veto serve`` on --port, or N on their own ports and ``veto proxy`` on --port.

    Each replica is its own process with its own model snapshot, reading the same Redis and
    artifacts dir: a replica holds no state another one needs."""
    if not plan.proxied:
        children.append(start_child("service", _veto("serve", "--port", str(plan.port)), env=env))
        return
    for n, port in enumerate(plan.replica_ports, start=1):
        children.append(start_child(f"service-{n}", _veto("serve", "--port", str(port)), env=env))
    upstreams = [arg for port in plan.replica_ports for arg in ("--upstream", f"127.0.0.1:{port}")]
    children.append(
        start_child("proxy", _veto("proxy", "--port", str(plan.port), *upstreams), env=env)
    )


def _start_prometheus(
    plan: Plan, scrape_interval: float, *, children: list[Child], env: dict[str, str]
) -> None:
    binary = promconfig.find_prometheus()
    if binary is None:
        _say(
            "veto up: --with-prometheus: no `prometheus` binary on PATH, continuing without it "
            "(Debian/Ubuntu: apt-get install prometheus)"
        )
        return
    assert plan.prometheus_port is not None
    trainer = [f"127.0.0.1:{plan.trainer_port}"] if plan.trainer_port is not None else []
    rules = [promconfig.RULES_FILE] if promconfig.RULES_FILE.is_file() else []
    config = promconfig.scrape_config(
        service_targets=[f"127.0.0.1:{port}" for port in plan.replica_ports],
        trainer_targets=trainer,
        scrape_interval_seconds=scrape_interval,
        rule_files=rules,
    )
    config_file = promconfig.write_config(plan.data_dir / "prometheus.yml", config)
    argv = promconfig.prometheus_argv(
        binary,
        config_file=config_file,
        storage_dir=plan.data_dir / "prometheus",
        listen_port=plan.prometheus_port,
    )
    children.append(start_child("prometheus", argv, env=env))
