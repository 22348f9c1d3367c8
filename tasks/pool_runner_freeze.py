"""Imported last by the fork server of `tasks.pool_runner` (after the preloaded modules):
moves every object created so far into the garbage collector's permanent generation, so
collections in the forked workers do not write to (and thereby copy) the shared pages."""

import gc

gc.freeze()
