"""Real data and pretrained models that install offline (used by the main job, tests, benchmarks)."""
