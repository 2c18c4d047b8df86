"""effbench: measured answers to "how fast, how much memory, what quality is lost, what fits"."""

__version__ = "0.1.0"

# Public results contract version: bump on any change to the shape of run files (see DESIGN.md).
SCHEMA_VERSION = 1
