"""pgsched benchmarks: each module runs from one command; see bench/README.md."""
