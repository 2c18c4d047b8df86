"""The gate: noise-aware verdicts between runs (compare, drift, stability, baselines, sensitivity) and the
statistics behind them. Reads run files through the harness; never measures."""
