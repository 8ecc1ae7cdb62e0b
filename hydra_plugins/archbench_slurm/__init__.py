"""archbench's SLURM launcher for Hydra: one sbatch array per GPU type (see launcher.py)."""
