import os
import signal
import sys


def _interrupted_before_start(signum, frame):
    # Nothing is written before the CLI takes over its own handlers: end at once, quietly.
    sys.stderr.write("rtseg: interrupted\n")
    os._exit(130)


for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, _interrupted_before_start)

from .cli import main  # after the handlers above, so that they cover this import

code = main()
# The outputs are final: a signal during the interpreter's shutdown (which resets the handlers) must not turn the
# exit status into "killed by SIGINT"
for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, signal.SIG_IGN)
sys.exit(code)
