"""`python -m src.bench`: the old name of `python -m src.speed` (src/speed/__main__.py), kept as an alias; its
`bench.*` overrides are read as `speed.*`, and its messages name them `bench.*`."""
from .speed.__main__ import cli

if __name__ == "__main__":
    cli("bench")
