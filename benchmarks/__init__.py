"""asv benchmarks (``asv.conf.json``'s benchmark_dir): ``restarts.py`` tracks the restart metrics per
host version x scenario; ``overhead.py`` is a standalone script, not an asv benchmark."""
