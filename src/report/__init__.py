"""`python -m src.report`: a sweep's run directories -> one comparison (table, CSV, plots, W&B report run)."""
