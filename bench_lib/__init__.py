"""effbench: measured answers to "how fast, how much memory, what quality is lost, what fits"."""

__version__ = "0.1.0"

# Public results contract version: bump on any change to the shape of run files (docs/results-contract.md,
# "Schema versions"; the history is in bench_lib/harness/contract.py).
SCHEMA_VERSION = 1
