"""The task and arch groups are package-scoped (not `_global_`): the step budget is resolved in one place
(conf/config.yaml: trainer.max_steps from arch.train_steps.<task>, else task.train_steps) and nar's decode default is
an override in its own defaults list. Every command composes to the values the `_global_` groups gave:
data/composed.json was captured from those configs (before this change; per case, each top-level node's resolved
value, stored once under a digest). Regenerate it only for an intended change: python -m tests.unit.config.test_groups
"""
import hashlib
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT, compose

FIXTURE = Path(__file__).resolve().parent / "data" / "composed.json"
ARCH_TASKS = {"decoder": ["classification", "lm", "translation"], "encdec": ["translation"],
              "encoder": ["classification"], "nar": ["translation"], "rnn_attn": ["translation"],
              "rnn_seq2seq": ["translation"]}
TASKS = ["classification", "lm", "translation"]
EXPERIMENTS = ["ar_vs_nar", "arch_comparison", "classification_encoder_vs_decoder", "encdec_translation",
               "gpu_comparison", "length_study", "lm_decoder", "lm_scaling", "multi30k_cpu", "multi30k_gpu",
               "shakespeare_char_cpu", "shakespeare_char_gpu", "sst2_cpu", "sst2_gpu", "tatoeba_en_zh_cpu"]
MEMBERS = ["encdec", "nar_pass2", "nar_pass4", "nar_pass10"]


def cases() -> list[tuple[str, ...]]:
    """Every arch x task (supported or not), alone, with trainer.max_steps= and with debug=fast; every experiment
    alone, with trainer.max_steps=, with debug=fast and with arch=nar; the ar_vs_nar members."""
    out: list[tuple[str, ...]] = [(), ("trainer.max_steps=7",), ("debug=fast",), ("debug=fast_dev_run",)]
    out += [(f"arch={a}",) for a in ARCH_TASKS] + [(f"task={t}",) for t in TASKS]
    for arch in ARCH_TASKS:
        for task in TASKS:
            pair = (f"arch={arch}", f"task={task}")
            out += [pair, (*pair, "trainer.max_steps=7"), (*pair, "debug=fast")]
        out += [(f"arch={arch}", "++arch.train_steps.translation=50"), (f"arch={arch}", "decode=beam"),
                (f"arch={arch}", "trainer=ddp", "debug=fast", "trainer.max_steps=9")]
    for exp in EXPERIMENTS:
        out += [(f"experiment={exp}",), (f"experiment={exp}", "trainer.max_steps=11"),
                (f"experiment={exp}", "debug=fast"), (f"experiment={exp}", "arch=nar")]
    for member in MEMBERS:
        out += [("experiment=ar_vs_nar", f"+ar_vs_nar_member={member}"),
                ("experiment=ar_vs_nar", f"+ar_vs_nar_member={member}", "debug=fast", "trainer.max_steps=5")]
    return out


SPEED_CASES = [(), *[(f"arch={a}",) for a in ARCH_TASKS], ("arch=nar", "decode=beam"), ("trainer=gpu",),
               ("arch=decoder", "size=base", "trainer=gpu")]
SPEED_NODES = ("arch", "decode", "size", "trainer", "speed")
NODES = ("arch", "task", "decode", "trainer", "size", "optim", "data", "bench", "attention", "logger", "seed",
         "samples")
DROP = {"data": ("root", "cache_dir")}  # from the environment, not from the groups


def snapshot(cfg, nodes) -> dict:
    """The resolved values of these top-level nodes ("<absent>" where the config has none)."""
    out = {}
    for node in nodes:
        if node not in cfg:
            out[node] = "<absent>"
            continue
        value = OmegaConf.to_container(cfg[node], resolve=True) if OmegaConf.is_config(cfg[node]) else cfg[node]
        for key in DROP.get(node, ()) if isinstance(value, dict) else ():
            value.pop(key, None)
        out[node] = value
    return out


def compose_speed(*overrides: str):
    """The config `python -m src.speed <overrides>` would run with (arch / decode / size / trainer, no task)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from src.config import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="speed", overrides=list(overrides))


TASK_STEPS = {"classification": 600, "lm": 600, "translation": 1500}  # task.train_steps, new in the task group


def _expected(kind: str, case: tuple[str, ...]) -> dict:
    fixture = _fixture()
    return {node: fixture["values"][key] for node, key in fixture[kind][" ".join(case)].items()}


_FIXTURE: dict = {}


def _fixture() -> dict:
    if not _FIXTURE:
        _FIXTURE.update(json.loads(FIXTURE.read_text()))
    return _FIXTURE


@pytest.mark.parametrize("case", cases(), ids=lambda c: " ".join(c) or "defaults")
def test_a_run_composes_to_the_values_the_global_groups_gave(case):
    got = snapshot(compose(*case), NODES)
    task = dict(got["task"])
    assert task.pop("train_steps") == TASK_STEPS[task["name"]]
    assert {**got, "task": task} == _expected("run", case)


@pytest.mark.parametrize("case", SPEED_CASES, ids=lambda c: " ".join(c) or "defaults")
def test_a_speed_run_composes_to_the_values_it_gave(case):
    assert snapshot(compose_speed(*case), SPEED_NODES) == _expected("speed", case)


def test_the_fixture_covers_every_case():
    assert set(_fixture()["run"]) == {" ".join(c) for c in cases()}
    assert set(_fixture()["speed"]) == {" ".join(c) for c in SPEED_CASES}


@pytest.mark.parametrize("group", ["task", "arch"])
def test_task_and_arch_configs_are_package_scoped_and_set_no_other_group(group):
    for path in sorted((ROOT / "conf" / group).glob("*.yaml")):
        text = path.read_text()
        assert "@package" not in text, path
        cfg = OmegaConf.load(path)
        assert {"trainer", "task", "arch", "decode"}.isdisjoint(cfg), path


def test_the_arch_budget_for_its_task_wins_over_the_task_budget_and_the_command_line_over_both():
    assert compose("arch=encdec").trainer.max_steps == 1000  # conf/arch/encdec.yaml: train_steps.translation
    assert compose("arch=decoder").trainer.max_steps == 1500  # task.train_steps
    assert compose("arch=encdec", "task.train_steps=20").trainer.max_steps == 1000
    assert compose("arch=decoder", "task.train_steps=20").trainer.max_steps == 20
    assert compose("arch=encdec", "trainer.max_steps=3", "++arch.train_steps.translation=5").trainer.max_steps == 3


def write_fixture(path: Path = FIXTURE) -> None:
    """Capture the values the configs compose to now (for an intended change only; see the module docstring)."""
    values: dict = {}
    out: dict = {"run": {}, "speed": {}}
    for kind, composer, nodes, all_cases in (("run", compose, NODES, cases()),
                                             ("speed", compose_speed, SPEED_NODES, SPEED_CASES)):
        for case in all_cases:
            keys = {}
            for node, value in snapshot(composer(*case), nodes).items():
                if node == "task":  # task.train_steps is new in the task group; the test checks it on its own
                    value.pop("train_steps", None)
                key = node + ":" + hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]
                values[key] = value
                keys[node] = key
            out[kind][" ".join(case)] = keys
    out["values"] = values
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_fixture()
