"""The suites: what is measured (attention, precision, fine-tune, convergence, calibration), the model presets
they build and the FLOP formulas they report. Built on the harness only."""
