"""Imported last by the fork server of `tasks.forked_workers`, after its preload.

1. Moves every object created so far into the garbage collector's permanent generation,
   so collections in the forked workers do not write to (and thereby copy) the pages they
   share.
2. Caps glibc's malloc arenas at 2 (`mallopt(M_ARENA_MAX)`, inherited by every fork): a
   worker runs a thread per host, and glibc would otherwise give the threads up to eight
   arenas per core, each holding freed memory of its own.
"""

import contextlib
import ctypes
import gc

M_ARENA_MAX = -8  # glibc's malloc.h
with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to cap
    ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)

gc.freeze()
