"""archbench: train and compare architecture variants on the same tasks and data."""
