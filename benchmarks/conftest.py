# The benchmarks' fixtures (`case`, `measure`) come from the effbench pytest plugin (bench_lib.harness.pytest_plugin),
# loaded by the repository's root conftest.py or, when effbench is installed, by its pytest11 entry point.
