"""Configuration identity: which runs are seeds of one configuration, and how each configuration is labelled.

A configuration is the run's resolved config (results.json "config") plus its device (GPU type or device string),
minus the seed and minus the keys that do not change the experiment (`IGNORED`, by dotted prefix): where files go
(data.root, data.cache_dir, results_file), the logger, hydra/launcher and gpu (the SLURM request; the device
column holds what ran), threads, progress and checkpoint frequency (progress_every_s, checkpoint_every_n_steps,
callbacks.progress_log, the checkpoint callback's save frequency/dir), the inference bench's settings (bench.*:
how speed is timed, not what is trained), attention drawing, printed samples, Lightning's console settings
(log_every_n_steps, enable_model_summary, enable_progress_bar, num_sanity_val_steps); data.seed when it follows
the run's seed in every run of the report (data.seed=${seed}: varied with the seed, so counted as the seed).
Everything else -- optim.lr, trainer.max_steps, data.vocab_size, size.d_model, decode.* ... -- makes another
configuration. Records without a
"config" (old schema, W&B) fall back to (arch, task, data, size, device, decode, arch params).
A key that a record's config lacks counts at the schema's default (src/config.py `RunConfig`): a switch added after
the run (decode.int8) does not split it from later runs that hold the default.
Each row is labelled by the config keys that tell the rows apart (`labels`): group names first (arch=encdec,
size=small, decode=beam), then other keys in order, each kept only if it separates rows the earlier ones do not."""
from __future__ import annotations

from collections import defaultdict

from ..config import ConfigError
from ..results import flatten, schema_defaults

KEYS = ("arch", "task", "data", "size", "device", "decode", "arch_params")
IGNORED = ("seed", "logger", "hydra", "gpu", "threads", "samples", "attention", "bench", "results_file",
           "progress_every_s", "checkpoint_every_n_steps", "data.root", "data.cache_dir", "callbacks.progress_log",
           "callbacks.model_checkpoint.every_n_train_steps", "callbacks.model_checkpoint.dirpath",
           "callbacks.model_checkpoint.enable_version_counter", "trainer.log_every_n_steps",
           "trainer.enable_model_summary", "trainer.enable_progress_bar", "trainer.num_sanity_val_steps")
NAMES = {"arch.name": "arch", "task.name": "task", "data.name": "data", "size.name": "size",
         "decode.method": "decode"}  # a group's name key, written "arch=encdec" in labels and --baseline


def get_in(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def decode_label(decode) -> str:
    if not isinstance(decode, dict):
        return str(decode or "")
    rest = ",".join(f"{k}={v}" for k, v in decode.items() if k != "method")
    return f"{decode.get('method', '?')}" + (f"({rest})" if rest else "")


def device_of(record: dict) -> str:
    """The GPU type from the SLURM `cluster` field, else the device string."""
    return get_in(record, "cluster", "gpu_type") or record.get("device") or "?"


def config_of(record: dict) -> dict:
    """The configuration a record belongs to (GPU type from the SLURM `cluster` field, else the device string)."""
    return {"arch": record.get("arch"), "task": record.get("task"), "data": record.get("data"),
            "size": record.get("size"),
            "device": device_of(record),
            "decode": decode_label(record.get("decode")),
            "arch_params": decode_label({"method": "", **(get_in(record, "config", "arch", "params") or {})}).strip("()")}


def identity(record: dict, data_seed_is_seed: bool = False) -> dict:
    """The configuration a record belongs to: {dotted config key: value} (module docstring)."""
    config = record.get("config")
    device = device_of(record)
    if not isinstance(config, dict):
        c = config_of(record)
        return {"arch.name": c["arch"], "task.name": c["task"], "data.name": c["data"], "size.name": c["size"],
                "decode": c["decode"], "arch.params": c["arch_params"], "device": device}
    flat = {**schema_defaults(), **flatten(config)}
    drop = lambda k: any(k == p or k.startswith(p + ".") for p in IGNORED)  # noqa: E731
    out = {k: v for k, v in flat.items() if not drop(k)}
    if data_seed_is_seed:
        out.pop("data.seed", None)
    return {**out, "device": device}


def _frozen(ident: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in ident.items()))


def _short(key: str) -> str:
    return NAMES.get(key, key)


def label_keys(identities: list[dict]) -> list[str]:
    """The config keys that tell the configurations apart, chosen greedily (group names first, then the rest
    sorted), each kept only if it separates configurations that the keys before it do not."""
    keys = sorted({k for d in identities for k in d}, key=lambda k: (k not in NAMES, k))
    distinct = lambda ks: len({tuple(repr(d.get(k)) for k in ks) for d in identities})  # noqa: E731
    chosen: list[str] = []
    for k in keys:
        if distinct(chosen + [k]) > distinct(chosen):
            chosen.append(k)
    return chosen


def labels(identities: list[dict]) -> list[str]:
    """Each configuration's label, "KEY=VALUE ..." over `label_keys` ("arch=encdec optim.lr=0.001"); "" for one."""
    chosen = label_keys(identities)
    return [" ".join(f"{_short(k)}={d.get(k)}" for k in chosen) for d in identities]


def group(records: list[dict]) -> list[tuple[str, dict, list[dict]]]:
    """[(label, identity, member records)], one per configuration, in first-seen order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    idents: dict[tuple, dict] = {}
    configured = [r for r in records if isinstance(r.get("config"), dict)]
    follows = (len({r.get("seed") for r in configured}) > 1
               and all(get_in(r, "config", "data", "seed") == r.get("seed") for r in configured))
    for r in records:
        ident = identity(r, follows)
        groups[_frozen(ident)].append(r)
        idents.setdefault(_frozen(ident), ident)
    keys = list(groups)
    return list(zip(labels([idents[k] for k in keys]), [idents[k] for k in keys], [groups[k] for k in keys]))


def select(configs: list[tuple[str, dict, list]], specs: list[str]) -> str:
    """The label of the one configuration that `--baseline KEY=VALUE ...` names (KEY: a dotted config key, or a
    group name: arch, task, data, size, decode); ConfigError naming the valid choices otherwise."""
    chosen = list(configs)
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise ConfigError(f"--baseline {spec!r}: expected KEY=VALUE, e.g. arch=encdec")
        key = {v: k for k, v in NAMES.items()}.get(key, key)
        if not any(key in ident for _, ident, _ in configs):
            valid = sorted({_short(k) for k in label_keys([c[1] for c in configs])} | set(NAMES.values()))
            raise ConfigError(f"--baseline {spec}: {_short(key)} is not a configuration key; choose one of: "
                              f"{', '.join(valid)} (or any dotted config key)")
        match = [c for c in chosen if _same(c[1].get(key), value)]
        if not match:
            values = sorted({str(c[1].get(key)) for c in chosen})
            raise ConfigError(f"--baseline {spec}: no configuration has {_short(key)}={value}; choose one of: "
                              f"{', '.join(values)}")
        chosen = match
    if len(chosen) > 1:
        raise ConfigError(f"--baseline {' '.join(specs)} matches {len(chosen)} configurations "
                          f"({'; '.join(c[0] for c in chosen)}): add a KEY=VALUE that tells them apart")
    return chosen[0][0]


def _same(value, text: str) -> bool:
    if str(value) == text:
        return True
    try:
        return float(value) == float(text)
    except (TypeError, ValueError):
        return False


