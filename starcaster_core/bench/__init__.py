"""Speed and memory benchmarks (python -m starcaster_core.bench); measured, never asserted."""
