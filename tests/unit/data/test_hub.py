"""Hub datasets by name (src/data/hub.py): offline, the look-up fails within seconds with one line."""
import os
import time

import pytest

from src.config import ConfigError
from src.data import hub


def test_offline_flags_mean_unreachable_without_a_probe(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_reachable() is False


def test_an_unreachable_host_is_detected_within_the_probe_timeout(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert hub.hub_reachable("unreachable.invalid", timeout=1.0) is False


@pytest.mark.parametrize("path,name", [("wmt16", "de-en"), ("glue", "sst2")])
def test_offline_lookup_fails_fast_with_one_line_pointing_at_local_files(path, name, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # as conftest sets for every test: no network in tests
    monkeypatch.setenv("HF_HUB_CACHE", os.devnull + "-none")  # nothing cached
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        hub.load(path=path, name=name, src_lang="de", tgt_lang="en")
    assert time.monotonic() - start < 30  # a network look-up would retry for minutes
    message = str(err.value)
    assert "\n" not in message and f"{path}/{name}" in message and "use local files" in message
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the flags are set for the rest of the run
