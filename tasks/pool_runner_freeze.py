"""Imported last by the fork server of `tasks.pool_runner` (after the preloaded modules).

1. Loads Prefect's installed collections (entry points such as prefect-aws and
   prefect-dask, which pull in boto3's docs, distributed, numpy...): every worker would
   otherwise import them on its first task run (Prefect loads them when it resolves a block
   type), ~670 modules per worker, each a private copy.
2. Moves every object created so far into the garbage collector's permanent generation,
   so collections in the forked workers do not write to (and thereby copy) shared pages.
"""

import contextlib
import gc

with contextlib.suppress(Exception):  # a broken collection must not stop the fork server
    from prefect.plugins import load_prefect_collections

    load_prefect_collections()

gc.freeze()
