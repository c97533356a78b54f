"""What a user types: the ``neutronq`` command (``cli``), the job it runs (``pipeline``: load,
export, quantize, lower, check, report) and the reading of its inputs (``inputs``: models,
calibration, evaluation and training data)."""
