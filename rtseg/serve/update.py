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

from ..errors import RtsegError, require
from .app import APP_NAME, ServeOptions, _check_options, _init_ray, application, check_reachable, deploy_failure


def update(opts: ServeOptions, force: bool = False, say=print) -> str:
    """Redeploy the running service with ``opts.bundle``; returns the new bundle's sha256."""
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
        holder = publish(package)
        try:
            serve.run(application(opts, holder, access), name=APP_NAME, route_prefix="/", blocking=False)
        except Exception as exc:  # noqa: BLE001 - Serve keeps the old version running when the new one fails
            raise RtsegError(f"the update did not roll out ({deploy_failure(serve, exc)}); the service keeps the"
                             f" bundle it had") from None
        withdraw(keep=holder)
        policy = ("its access policy kept" if opts.access is None else "a token required from now on"
                  if access.required else "open to anyone from now on (--no-auth)")
        say(f"rtseg: updated the service to {opts.bundle} (bundle sha256 {package.bundle_sha256[:12]}..., was"
            f" {str(current.get('bundle_sha256'))[:12]}...), {policy}")
        return package.bundle_sha256
    finally:
        ray.shutdown()


def _running_access(serve, opts: ServeOptions):
    """The running service's access policy, to keep; a service that cannot say is not silently opened."""
    try:
        return serve.get_app_handle(APP_NAME).access_policy.remote().result(timeout_s=60)
    except Exception:  # noqa: BLE001 - an older service, or one not answering
        raise RtsegError("--update: the running service did not say which token it asks for; pass --token TOKEN"
                         " (or --no-auth) to set its access policy with this update") from None
