"""``rtseg serve``: a bundle served by Ray Serve (replicas holding a Segmenter, batched requests, HTTP and a
Python handle), and :class:`~rtseg.serve.client.RemoteSegmenter`, the client with the Segmenter surface.

An extra (``pip install 'rtseg[serve]'``): nothing else in rtseg imports this package, and importing it imports no
Ray; :mod:`rtseg.serve.app` and :mod:`rtseg.serve.deployment` do, when a service starts.
"""


def start(opts):
    """Start the service (see :func:`rtseg.serve.app.start`)."""
    from .app import start as _start

    return _start(opts)


def RemoteSegmenter(url: str, **kwargs):  # noqa: N802 - a factory standing in for the class, imported lazily
    """A client with the Segmenter surface for the service at ``url`` (see :mod:`rtseg.serve.client`)."""
    from .client import RemoteSegmenter as _Remote

    return _Remote(url, **kwargs)
