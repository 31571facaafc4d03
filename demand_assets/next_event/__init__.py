"""Next-event prediction from e-commerce sessions (issue 21): sequences (`sequences.py`),
baselines (`baselines.py`), torch networks (`networks.py`, imported when one is built),
metrics and plots (`evaluation.py`)."""
