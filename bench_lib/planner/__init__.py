"""The planner: predicted fine-tune memory from first principles (footprint), which GPUs fit it (plan),
calibration on measured runs, and the largest size that fits a budget (fit)."""
