"""``rtseg serve BUNDLE --update --address ADDR``: roll a running service over to a changed bundle.

The running service keeps the bytes it verified at its start, whatever happens to its bundle folder; a new bundle
is served only through this command. It joins the cluster, asks the running application which model and bundle it
serves, verifies the new bundle (:func:`rtseg.serve.package.pack`), refuses a bundle of another model unless
``force``, publishes the new bytes and redeploys the application with them: Serve starts replicas of the new
version and stops the old ones once they have answered what they hold (a rolling update; a request an old replica
could not take is retried by the client). The old bundle's holder is withdrawn once every replica runs the new one.

Access: an update keeps the running service's token (its digest, asked of the service through Ray) unless the
command names a new policy (``--token``, ``$RTSEG_TOKEN`` or ``--no-auth``: ``opts.access``), so clients holding
the token keep working; naming one is how a token is rotated, and the same bundle is then redeployed with it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import time

from ..errors import RtsegError, require
from .app import (APP_NAME, ServeOptions, _check_options, _init_ray, application, check_reachable, check_resources,
                  deploy_failure, end_ray)

UPDATE_TIMEOUT_S = 600.0  # default --update-timeout: replicas that load a bundle start in seconds, not minutes
POLL_S = 1.0


def update(opts: ServeOptions, force: bool = False, say=print, timeout_s: float = UPDATE_TIMEOUT_S) -> str:
    """Redeploy the running service with ``opts.bundle``; returns the new bundle's sha256.

    The rollout is watched, not waited on blindly: a version that fails to start, a cluster that can no longer hold
    the new replicas (a node left) or ``timeout_s`` without the application running ends the command with one line.
    Serve keeps its target meanwhile (it finishes the rollout once it can), and the service answers from the
    replicas still running; both bundles stay held for them."""
    from .package import pack, publish, withdraw

    _check_options(opts)
    if not opts.address:
        raise RtsegError("--update changes a running service: pass --address of its Ray cluster (the head's"
                         " HOST:PORT, or 'auto' for a cluster started on this machine)")
    ray = require("ray", "serve", "ray[serve]")
    serve = require("ray.serve", "serve", "ray[serve]")
    bundle = Path(opts.bundle).resolve()
    package = pack(bundle if bundle.is_dir() else bundle.parent)  # a changed or broken bundle: one line, no change
    check_reachable(opts.address)
    _init_ray(ray, opts)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        try:
            current = serve.get_app_handle(APP_NAME).info.remote().result(timeout_s=60)
        except Exception:  # noqa: BLE001 - no application, or none answering: the same advice
            raise RtsegError(f"no rtseg service answers on the Ray cluster at {opts.address}; start one with"
                             f" rtseg serve BUNDLE --address {opts.address}") from None
        access = opts.access or _running_access(serve, opts)
        if current.get("bundle_sha256") == package.bundle_sha256 and opts.access is None:
            say(f"rtseg: the service already serves this bundle (sha256 {package.bundle_sha256[:12]}...)")
            return package.bundle_sha256
        if current.get("model") != package.model and not force:
            raise RtsegError(f"--update: the service runs {current.get('model')}, {opts.bundle} is {package.model};"
                             f" pass --force to replace the model")
        check_resources(ray.cluster_resources(), opts)  # one line now, not a rollout that never ends
        holder = publish(package)
        say(f"rtseg: rolling the service over to {opts.bundle} ({opts.replicas} replica(s))")
        try:
            serve.run_many([serve.RunTarget(target=application(opts, holder, access), name=APP_NAME,
                                            route_prefix="/")], wait_for_applications_running=False)
        except Exception as exc:  # noqa: BLE001 - Serve keeps the old version running when the new one fails
            raise RtsegError(f"the update did not roll out ({deploy_failure(serve, exc)}); the service keeps the"
                             f" bundle it had") from None
        _watch_rollout(ray, serve, opts, timeout_s)
        withdraw(keep=holder)
        policy = ("its access policy kept" if opts.access is None else "a token required from now on"
                  if access.required else "open to anyone from now on (--no-auth)")
        say(f"rtseg: updated the service to {opts.bundle} (bundle sha256 {package.bundle_sha256[:12]}..., was"
            f" {str(current.get('bundle_sha256'))[:12]}...), {policy}")
        return package.bundle_sha256
    finally:
        end_ray(ray)


def _watch_rollout(ray, serve, opts: ServeOptions, timeout_s: float) -> None:
    """Return once the application runs the new version; one line when it failed, cannot fit or takes too long."""
    from ray.serve.schema import ApplicationStatus

    after = ("; Serve finishes the rollout once it can, and the service answers from the replicas still running"
             " meanwhile (rtseg serve BUNDLE --update with the bundle it had goes back)")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = serve.status().applications[APP_NAME].status
        except KeyError:
            raise RtsegError(f"--update: the rtseg application left the Ray cluster at {opts.address} during the"
                             f" update (deleted by another command?); start it again with rtseg serve BUNDLE"
                             f" --address {opts.address}") from None
        if status == ApplicationStatus.RUNNING:
            return
        if status == ApplicationStatus.DEPLOY_FAILED:
            raise RtsegError(f"the update did not roll out ({deploy_failure(serve, RuntimeError(status))}); the"
                             f" service keeps the bundle it had")
        try:
            check_resources(ray.cluster_resources(), opts)
        except RtsegError as exc:  # the cluster shrank under the rollout
            raise RtsegError(f"--update: the cluster lost capacity during the rollout (a node left?): {exc}"
                             f"{after}") from None
        if time.monotonic() > deadline:
            raise RtsegError(f"--update: the new version was not running after {timeout_s:g} s (status {status});"
                             f" raise --update-timeout, or check the cluster's nodes with 'ray status'{after}")
        time.sleep(POLL_S)


def _running_access(serve, opts: ServeOptions):
    """The running service's access policy, to keep; a service that cannot say is not silently opened."""
    try:
        return serve.get_app_handle(APP_NAME).access_policy.remote().result(timeout_s=60)
    except Exception:  # noqa: BLE001 - an older service, or one not answering
        raise RtsegError("--update: the running service did not say which token it asks for; pass --token TOKEN"
                         " (or --no-auth) to set its access policy with this update") from None
