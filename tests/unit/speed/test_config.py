"""The speed benchmark's typed node (src/speed/config.py) and its entry (src/speed/__main__.py): `speed.*`
validated in one line (exit 2), the old `bench.*` overrides of `python -m src.bench` read as `speed.*`, and what is
compiled taken from the run's own switches, train.compile and decode.compile (speed.compile=true: both)."""
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.config import ConfigError
from src.speed.__main__ import aliased, spec_of
from src.speed.compare import resolve
from src.speed.config import SpeedConfig, speed_config
from tests.conftest import ROOT


def _spec(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="speed", overrides=aliased(list(overrides)))
    return resolve(spec_of(cfg, speed_config(cfg.speed)))


def test_defaults_are_the_yaml_and_the_dataclass_alike():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="speed")
    assert speed_config(cfg.speed) == SpeedConfig()


@pytest.mark.parametrize("node,message", [
    (dict(batch_sizes=[0]), "speed.batch_sizes=[0] must be a non-empty list of sizes >= 1"),
    (dict(batch_sizes=[]), "speed.batch_sizes=[] must be a non-empty list of sizes >= 1"),
    (dict(methods=["fast"]), "speed.methods has fast; choose among: greedy, beam, sample"),
    (dict(modes=["slow"]), "speed.modes has slow; choose among: fixed, natural"),
    (dict(device="tpu"), "speed.device=tpu is not valid; choose one of: cpu, cuda"),
    (dict(repeats=0), "speed.repeats=0 must be >= 1"),
    (dict(vocab="abc"), "speed.vocab: Value 'abc' of type 'str' could not be converted to Integer"),
])
def test_a_bad_value_is_one_line(node, message):
    with pytest.raises(ConfigError) as e:
        speed_config(OmegaConf.create(node))
    assert str(e.value) == message


def test_old_bench_overrides_are_read_as_speed():
    assert aliased(["bench.vocab=1", "+bench.x=1", "++bench.y=2", "~bench.z", "hydra.run.dir=out/bench.x",
                    "speed.seed=1"]) == ["speed.vocab=1", "+speed.x=1", "++speed.y=2", "~speed.z",
                                         "hydra.run.dir=out/bench.x", "speed.seed=1"]


@pytest.mark.parametrize("overrides,train,decode", [
    ((), False, False), (("train.compile=true",), True, False), (("decode.compile=true",), False, True),
    (("speed.compile=true",), True, True), (("bench.compile=true",), True, True),
    (("train.compile=true", "decode.compile=true"), True, True)])
def test_compile_follows_the_runs_switches(overrides, train, decode):
    spec = _spec(*overrides)
    assert (spec["train_compile"], spec["decode_compile"], spec["compile"]) == (train, decode, train and decode)
    assert "compile" not in spec["decode"]  # generate() gets decode_compile, not the node's own key


@pytest.mark.parametrize("command,override,message", [
    ("src.bench", "bench.batch_sizes=[0]", "error: bench.batch_sizes=[0] must be a non-empty list of sizes >= 1"),
    ("src.speed", "speed.batch_sizes=[0]", "error: speed.batch_sizes=[0] must be a non-empty list of sizes >= 1"),
])
def test_cli_refuses_a_bad_value_in_one_line(tmp_path, command, override, message):
    p = subprocess.run([sys.executable, "-m", command, override, f"hydra.run.dir={tmp_path}"], capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 2 and p.stderr.strip() == message and "Traceback" not in p.stderr + p.stdout
