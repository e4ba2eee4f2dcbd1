#!/usr/bin/env python3
"""Times the reference Python implementation's in-process manifest sync (PyPI `oneiric` 0.17.0,
`oneiric.remote.loader.sync_remote_manifest`) on one manifest file: a fresh Resolver per run,
the file read as a local path (allow_file_uris, its directory allowed), no signature required
(the Rust rows it is set beside check an unsigned file too), logging configured by its own
`configure_logging` at INFO, a service's level (its per-candidate lines are DEBUG). Writes one
JSON object to RESULT: {"version": ..., "runs_ms": [...], "median_ms": ..., "registered": N}.

  reference_sync.py MANIFEST RUNS RESULT

Run by tests/bench/service.py inside a chroot where `pip install oneiric==0.17.0` was done.
"""

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time


def main():
    path, runs, result_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    from importlib.metadata import version

    from oneiric.core.config import RemoteSourceConfig
    from oneiric.core.logging import LoggingConfig, configure_logging
    from oneiric.core.resolution import Resolver
    from oneiric.remote.loader import sync_remote_manifest

    configure_logging(LoggingConfig(level="INFO"))
    times = []
    registered = None
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(runs):
            config = RemoteSourceConfig(
                enabled=True,
                manifest_url=path,
                cache_dir=cache,
                allow_file_uris=True,
                allowed_file_uri_roots=[os.path.dirname(os.path.abspath(path))],
                max_retries=1,
            )
            resolver = Resolver()
            t0 = time.perf_counter()
            result = asyncio.run(sync_remote_manifest(resolver, config))
            times.append((time.perf_counter() - t0) * 1000.0)
            registered = getattr(result, "registered", None)
    with open(result_path, "w") as f:
        json.dump(
            {
                "version": version("oneiric"),
                "runs_ms": times,
                "median_ms": statistics.median(times),
                "registered": registered,
            },
            f,
        )


if __name__ == "__main__":
    main()
