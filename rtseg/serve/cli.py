"""``rtseg serve BUNDLE``: the bundle behind an HTTP endpoint on Ray Serve, batched across clients."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ..errors import RtsegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="a bundle folder written by rtseg export (read and verified here, then"
                                       " handed to every replica through Ray: no copy on the other nodes)")
    parser.add_argument("--replicas", type=int, default=1, help="replicas, each holding one Segmenter (default 1)")
    parser.add_argument("--gpus-per-replica", type=float, default=0.0,
                        help="GPUs per replica, fractions allowed (default 0: CPU)")
    parser.add_argument("--cpus-per-replica", type=float, default=1.0,
                        help="CPU cores per replica (default 1; also its ONNX Runtime threads)")
    parser.add_argument("--max-batch", type=int, default=8, help="frames batched into one call (default 8)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0,
                        help="how long a frame waits for others to fill its batch (default 5 ms)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for"
                                                             " every interface)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080, as every rtseg --serve)")
    parser.add_argument("--serve", metavar="[HOST:]PORT", help="the address in one value, as rtseg run --serve"
                        " takes it: PORT, HOST:PORT or :PORT (instead of --host/--port)")
    parser.add_argument("--token", default=None,
                        help="the token clients must send ('Authorization: Bearer TOKEN' or ?token=TOKEN); default"
                             " $RTSEG_TOKEN, else one generated and printed at start when --host is beyond the"
                             " loopback (on 127.0.0.1 no token unless one is given)")
    parser.add_argument("--no-auth", action="store_true",
                        help="beyond the loopback, answer anyone without a token (a warning is printed)")
    parser.add_argument("--address", help="join this Ray cluster (HOST:PORT of its head, or ray://HOST:10001)"
                                          " instead of starting a local one")
    parser.add_argument("--update", action="store_true",
                        help="roll the service running on --address over to this bundle (same flags as its start),"
                             " then exit; a bundle of another model needs --force")
    parser.add_argument("--force", action="store_true", help="with --update: replace the model too")
    parser.add_argument("--update-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="with --update: give up waiting for the new version after this long (default 600);"
                             " a failed start or a cluster too small for it ends the wait at once")
    parser.add_argument("--proxy-location", default="HeadOnly", choices=("HeadOnly", "EveryNode"),
                        help="HTTP proxies: HeadOnly (default; the URL printed) or EveryNode (one per node with"
                             " replicas, each on --port: for a load balancer in front)")
    parser.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime or torch (default auto)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: choose)")
    parser.add_argument("--max-frame", default="4320x7680", metavar="HxW",
                        help="largest frame accepted; larger ones get 413 (default 4320x7680)")


def run(args: argparse.Namespace) -> int:
    import os

    from ..access import TOKEN_ENV, is_loopback, resolve
    from ..sizes import parse_size
    from .app import ServeOptions, start

    if args.serve:
        host, _, port = str(args.serve).rpartition(":")
        if not port.isdigit() or int(port) > 65535:
            raise RtsegError(f"--serve {args.serve}: expected PORT or HOST:PORT (port 0-65535)")
        args.host, args.port = host.strip("[]") or args.host, int(port)
    opts = ServeOptions(bundle=args.bundle, replicas=args.replicas, cpus_per_replica=args.cpus_per_replica,
                        gpus_per_replica=args.gpus_per_replica, max_batch=args.max_batch,
                        batch_wait_ms=args.batch_wait_ms, host=args.host, port=args.port, address=args.address,
                        backend=args.backend, device=args.device, max_frame=parse_size(args.max_frame, "--max-frame"),
                        proxy_location=args.proxy_location)
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    # the deployment gets the token's digest only; --update keeps the running policy unless a new one is named
    named = args.token is not None or args.no_auth or bool(os.environ.get(TOKEN_ENV))
    grant = resolve(args.host, args.port, args.token, args.no_auth, flag="--host") if named or not args.update \
        else None
    opts.access = grant.access if grant else None
    if grant and grant.notice and not is_loopback(args.host):
        say(f"rtseg: {grant.notice}")
    if args.update:
        from .update import update

        if args.update_timeout <= 0:
            raise RtsegError(f"--update-timeout {args.update_timeout:g}: must be more than 0 seconds")
        update(opts, force=args.force, say=say, timeout_s=args.update_timeout)
        return 0
    if args.force:
        raise RtsegError("--force goes with --update (replacing a running service's model)")
    service = start(opts)
    # Ray puts its own SIGTERM handler in this process (an abort with a native stack dump); ours stops the
    # service: Ctrl-C or SIGTERM (what docker and systemd send) drain the replicas, then exit 128 + the signal
    signals: list[int] = []
    stop = threading.Event()

    def on_signal(signum, _frame):
        signals.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"rtseg: serving {args.bundle} (bundle sha256 {service.bundle_sha256[:12]}...) on {args.replicas}"
              f" replica(s) at {service.url}/segment"
              f" (health: {service.url}/health); Ctrl-C stops", file=sys.stderr, flush=True)
        if grant.token and grant.token != (args.token or os.environ.get(TOKEN_ENV)):
            # a generated token is printed once, here, and nowhere else; one given is the user's already (and a
            # service's log is kept: it stays out of it)
            say(f"rtseg: token {grant.token} (clients: rtseg run --remote {service.url} --token TOKEN or"
                f" {TOKEN_ENV}=TOKEN; HTTP: 'Authorization: Bearer TOKEN' or ?token=TOKEN)")
        elif grant.token:
            say("rtseg: requests need the token given with --token / $RTSEG_TOKEN")
        while not stop.wait(0.5):
            pass
        print(f"rtseg: {signal.Signals(signals[0]).name}: stopping (draining the replicas)", file=sys.stderr,
              flush=True)
    finally:
        try:
            service.stop()  # further signals are only recorded meanwhile
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 128 + signals[0] if signals else 0
