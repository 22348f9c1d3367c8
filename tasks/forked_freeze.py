"""Imported last by the fork server of `tasks.forked_workers`, after its preload: moves every
object created so far into the garbage collector's permanent generation, so collections in
the forked workers do not write to (and thereby copy) the pages they share."""

import gc

gc.freeze()
