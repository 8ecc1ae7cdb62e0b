"""archbench's local launcher for Hydra: a re-run sweep resumes (see launcher.py)."""
