"""``rtseg bench`` (being written)."""


def add_arguments(p):
    p.add_argument("bundles", nargs="+")


def run(args):
    return 0
