# A plain checkout runs `pytest benchmarks/` without installing: the root conftest loads the plugin.
# When effbench is installed, the same module is already registered under this name and is not loaded twice.
pytest_plugins = ["bench_lib.harness.pytest_plugin"]
