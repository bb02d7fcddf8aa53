"""A child process that ends with its parent, ``kill -9`` included: Linux's parent-death signal.

The kernel sends the signal when the *thread* that forked the child ends, so arm it from a thread that
owns the child for its whole life (a command's main thread, or a single-threaded process that forks).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

SUPPORTED = sys.platform.startswith("linux")
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def ends_with_parent() -> Callable[[], None]:
    """Called in the parent before forking; returns what the new child calls first (``Popen``'s
    ``preexec_fn``, or right after ``os.fork``): from then on the child gets SIGTERM when its parent
    ends. prctl is looked up here, so the child only makes the call."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != parent:
            # The parent ended before the signal was armed: nothing would send it now.
            os.kill(os.getpid(), signal.SIGTERM)

    return arm
