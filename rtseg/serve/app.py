"""Start and stop the ``rtseg serve`` application on a Ray cluster: a local one, or an existing one to join.

Checks that fail fast come before Ray starts: the bundle is read, the HTTP port is tried, an ``--address`` is
reached with a plain TCP connection (Ray itself would wait a minute before saying it cannot connect).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ..access import Access
from ..errors import RtsegError, require
from .codec import DEFAULT_MAX_FRAME

log = logging.getLogger(__name__)
APP_NAME = "rtseg"
# Serve counts a request against its replica's max_ongoing_requests from the moment its headers arrive, and the
# replica pulls the body from the proxy afterwards: an upload that stalls holds a slot until its body deadline
# (codec.BODY_TIMEOUT_S). Slots sized for the batches alone (2 x --max-batch) let a few dozen stalled uploads queue
# every frame and every /health behind them for 10 s (benchmarks/serve_stall.py: 40 stallers, 1 frame/s and /health
# in 9.8 s with 32 slots over 2 replicas). A request waiting for its body costs a coroutine and no CPU, so each
# replica takes this many more: the batches still bound the compute.
WAITING_BODIES = 64


@dataclass
class ServeOptions:
    bundle: Path
    replicas: int = 1
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    host: str = "127.0.0.1"
    port: int = 8000
    address: str | None = None  # None: start a local cluster; else join this one (host:port or ray://host:port)
    backend: str = "auto"
    device: str | None = None
    max_frame: tuple[int, int] = DEFAULT_MAX_FRAME
    num_cpus: int | None = None  # size of a local cluster (default: this machine's cores)
    proxy_location: str = "HeadOnly"  # HeadOnly: one HTTP proxy, on the head; EveryNode: one per node with replicas
    ray_init: dict = field(default_factory=dict)  # extra ray.init arguments for a local cluster
    # who may ask (rtseg.access.resolve decides; the token's digest only). None: open on start; on --update, the
    # running service's policy is kept
    access: Access | None = None


@dataclass
class Service:
    """A running application: its HTTP URL and Python handle. ``stop()`` undeploys it (and ends a local cluster)."""

    url: str
    handle: object
    joined: bool
    bundle_sha256: str | None = None

    def stop(self) -> None:
        from ray import serve
        import ray

        from .package import withdraw

        try:
            serve.delete(APP_NAME)  # the replicas drained; a joined cluster's other applications keep running
            if self.joined:
                withdraw()  # the bundle holders (this one, and one an --update left)
            # a local cluster ends with ray.shutdown(): serve.shutdown() would have the controller kill itself under
            # a retried task, and the raylet print "graceful_shutdown failed ... infinite retries"
        finally:
            end_ray(ray)


def start(opts: ServeOptions) -> Service:
    """Deploy the bundle's segmenter on ``opts.replicas`` replicas; return once every replica is ready."""
    from ..bundle import read_manifest

    _check_options(opts)
    ray = require("ray", "serve", "ray[serve]")  # the extra first: a bundle is no use without it
    serve = require("ray.serve", "serve", "ray[serve]")
    read_manifest(opts.bundle)
    bundle = Path(opts.bundle).resolve()
    bundle = bundle if bundle.is_dir() else bundle.parent

    if opts.address:
        check_reachable(opts.address)  # the HTTP proxy then listens on the cluster's nodes, not necessarily here
    else:
        check_port_free(opts.host, opts.port)
    from .package import pack, publish, withdraw

    package = pack(bundle)  # checked here, before Ray starts: a changed artifact is one line
    _init_ray(ray, opts)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # Serve's INFO lines on every start and stop
    deployed = holder = None
    try:
        check_resources(ray.cluster_resources(), opts)  # before Serve waits for replicas that cannot be placed
        serve.start(proxy_location=opts.proxy_location, http_options={"host": opts.host, "port": opts.port})
        if opts.address:
            _check_joinable(serve, opts)
        holder = publish(package)  # the verified bytes, held on the head node for every replica to fetch
        deployed = True
        handle = serve.run(application(opts, holder), name=APP_NAME, route_prefix="/", blocking=False)
    except BaseException as exc:  # Ctrl-C included: nothing of ours stays deployed
        why = deploy_failure(serve, exc)  # asked before the application is deleted with its status
        try:
            if opts.address:  # the cluster's other applications (and a service found running) keep running
                if deployed:
                    serve.delete(APP_NAME)
                if holder:
                    withdraw(only=holder)
            # a local cluster ends with ray.shutdown() below: nothing to drain, and serve.shutdown() here has the
            # controller kill itself under a retried task (a raylet "graceful_shutdown failed" line before ours)
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            pass
        finally:
            end_ray(ray)
        if isinstance(exc, (KeyboardInterrupt, RtsegError)):
            raise
        raise RtsegError(f"Ray Serve could not start the application: {why}") from None
    host = "127.0.0.1" if opts.host in ("0.0.0.0", "::") else opts.host
    return Service(url=f"http://{host}:{opts.port}", handle=handle, joined=bool(opts.address),
                   bundle_sha256=package.bundle_sha256)


def application(opts: ServeOptions, holder: str, access: Access | None = None):
    """The Serve application: ``opts.replicas`` replicas, each loading the bundle held by ``holder``, each asking
    requests for the token whose digest ``access`` (default ``opts.access``) holds."""
    from .deployment import SegmentService

    threads = max(1, int(round(opts.cpus_per_replica))) if opts.gpus_per_replica == 0 else None
    return SegmentService.options(
        num_replicas=opts.replicas, max_ongoing_requests=2 * opts.max_batch + WAITING_BODIES,
        ray_actor_options={"num_cpus": opts.cpus_per_replica, "num_gpus": opts.gpus_per_replica},
    ).bind({"holder": holder}, opts.backend, opts.device, threads, opts.max_batch, opts.batch_wait_ms,
           opts.max_frame, access or opts.access or Access(port=opts.port))


def deploy_failure(serve, exc: BaseException, app: str = APP_NAME) -> str:
    """Why a deploy failed, in one line: the replica's own exception (Serve's deployment status keeps its traceback;
    the exception ``serve.run`` raises says only "Failed to update the deployments ['rtseg']"), else ``exc``'s."""
    import re

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    try:
        message = "\n".join(d.message or "" for d in serve.status().applications[app].deployments.values())
    except Exception:  # noqa: BLE001 - no status to read: the exception is all there is
        return first
    # the last "SomeError: text" line of the replica's traceback; rtseg's own errors are said as they are
    found = re.findall(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt)): (.+)$", message, re.MULTILINE)
    if not found:
        return first
    name, text = found[-1]
    text = text.strip()[:300]
    return f"a replica failed to start: {text if name == 'RtsegError' else f'{name}: {text}'}"


def _check_joinable(serve, opts: ServeOptions) -> None:
    """Joining a cluster: an rtseg service already running there is changed only by ``--update``; Serve has one HTTP
    address per cluster, so one that listens elsewhere is one line, not a service announced on a port nobody
    listens on."""
    if APP_NAME in serve.status().applications:
        raise RtsegError(f"an rtseg service already runs on the Ray cluster at {opts.address}; change its bundle"
                         f" with rtseg serve BUNDLE --update --address {opts.address}")
    try:
        from ray.serve.context import _get_global_client

        config = _get_global_client().http_config
        running = (config.host, int(config.port))
    except Exception:  # noqa: BLE001 - another Ray version: nothing to compare
        return
    if running != (opts.host, opts.port):
        raise RtsegError(f"Serve already runs on the Ray cluster at {opts.address} with its HTTP proxy on"
                         f" {running[0]}:{running[1]}; pass --host {running[0]} --port {running[1]} (one HTTP"
                         f" address per cluster)")


def _check_options(opts: ServeOptions) -> None:
    if opts.replicas < 1:
        raise RtsegError(f"--replicas {opts.replicas}: must be at least 1")
    if opts.max_batch < 1:
        raise RtsegError(f"--max-batch {opts.max_batch}: must be at least 1")
    if opts.batch_wait_ms < 0:
        raise RtsegError(f"--batch-wait-ms {opts.batch_wait_ms}: must be 0 or more")
    if opts.gpus_per_replica < 0 or opts.cpus_per_replica < 0:
        raise RtsegError("--gpus-per-replica and --cpus-per-replica must be 0 or more")
    if not 0 < opts.port < 65536:
        raise RtsegError(f"--port {opts.port}: must be 1-65535")


def check_resources(total: dict, opts: ServeOptions) -> None:
    """One line, at once, when the cluster cannot hold every replica (Ray would wait for them forever)."""
    where = f"the Ray cluster at {opts.address}" if opts.address else "this machine's Ray cluster"
    for key, flag, each in (("CPU", "--cpus-per-replica", opts.cpus_per_replica),
                            ("GPU", "--gpus-per-replica", opts.gpus_per_replica)):
        need, have = opts.replicas * each, float(total.get(key, 0.0))
        if need > have + 1e-9:
            fix = ("pass --gpus-per-replica 0 to run on the CPU" if key == "GPU" and have == 0
                   else f"lower --replicas or {flag}")
            raise RtsegError(f"{opts.replicas} replica(s) x {flag} {each:g} need {need:g} {key}(s) but {where} has"
                             f" {have:g}; {fix}")


def check_port_free(host: str, port: int) -> None:
    """Fail with one line if ``host:port`` cannot be bound (Serve's proxy would otherwise retry quietly)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise RtsegError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick a free --port or stop"
                             f" what uses it") from None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to the cluster's address, so a wrong ``--address`` fails in seconds."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise RtsegError(f"--address {address!r}: expected HOST:PORT (the head's GCS, e.g. 10.0.0.5:6379) or"
                         f" ray://HOST:10001")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=timeout).close()
    except OSError as exc:
        raise RtsegError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start one there with"
                         f" 'ray start --head' or leave out --address to start a local cluster") from None


def end_ray(ray) -> None:
    """``ray.shutdown()`` once the outcome is decided. Serve's handle finishes a call's bookkeeping on a Ray thread
    after the result is in hand; one that runs into the shutdown logs an ERROR with a traceback ("failed to consume
    generator ref") that says nothing about the command, so Serve's logger is silenced first."""
    logging.getLogger("ray.serve").setLevel(logging.CRITICAL)
    ray.shutdown()


def _init_ray(ray, opts: ServeOptions) -> None:
    # Workers run the same rtseg as this process: the folder that holds the package goes on their path.
    package_root = str(Path(__file__).resolve().parents[2])
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH"))
                                                      if p)}}
    try:
        if opts.address:
            ray.init(address=opts.address, runtime_env=env, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(num_cpus=opts.num_cpus, include_dashboard=False, runtime_env=env,
                     logging_level=logging.ERROR, log_to_driver=False, **opts.ray_init)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        where = f"join the Ray cluster at {opts.address}" if opts.address else "start a local Ray cluster"
        chain = f"{exc!r} {exc.__cause__!r} {exc.__context__!r}"
        if opts.address and any(k in chain for k in ("Unauthenticated", "AuthToken", "AuthenticationError")):
            first += ("; the cluster uses token authentication: set RAY_AUTH_MODE=token and its token"
                      " (RAY_AUTH_TOKEN or ~/.ray/auth_token)")
        raise RtsegError(f"cannot {where}: {first}") from None
