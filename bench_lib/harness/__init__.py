"""The harness: how a case is measured and kept (device, timing, memory and energy probes, runner, journal,
supervisor, pytest plugin), the registries and profiles the suites fill in, the run-file contract, and the
hardware catalog that fractions of peak come from. It imports nothing from the packages above it."""
