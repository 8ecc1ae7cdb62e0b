"""The report's configurations as the figures label and style them (one `Group` per configuration, one marker per
configuration of an arch, one colour per arch: src/plots.py), and the small rules the figures share: which metric is
the task's validation metric, which direction is better, how a decoding variant's metric and curve are named."""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

from .aggregate import config_of, ct2_engines, get_in
from .collect import Member

VAL_BY_TASK = {"translation": "val/bleu", "classification": "val/accuracy", "lm": "val/loss"}
LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "wer", "ter", "error", "latency")


@dataclass
class Group:
    """The finished members of one configuration, as the figures label and style it."""

    label: str
    arch: str
    marker: str
    device: str
    base: str  # the label without the device (throughput_by_device groups by device)
    members: list[Member]
    config: str = ""  # the report's label of the configuration ("arch=encdec"; --baseline names one)

    @property
    def records(self) -> list[dict]:
        return [m.record for m in self.members]


def higher_is_better(metric: str) -> bool:
    return not any(w in metric.lower() for w in LOWER_IS_BETTER)


def family(record: dict) -> str:
    """"nar" or "ar" (results.json config.arch.family; records without it: by the arch name)."""
    return get_in(record, "config", "arch", "family") or ("nar" if str(record.get("arch")) == "nar" else "ar")


def val_metric(record: dict) -> str | None:
    """The task's validation metric: results.json validation.metric, else task.val_metric, else by task
    (translation val/bleu, classification val/accuracy, lm val/loss)."""
    return (get_in(record, "validation", "metric") or get_in(record, "config", "task", "val_metric")
            or VAL_BY_TASK.get(str(record.get("task"))))


def variant_metric(headline: str, variant: str) -> str:
    """The test metric of an inference variant: decode -> test/bleu, decode_pass1 -> test/pass1/bleu."""
    suffix = variant.removeprefix("decode").strip("_/")
    if not suffix:
        return headline
    head, _, rest = headline.partition("/")
    return f"{head}/{suffix}/{rest}" if rest else f"{headline}/{suffix}"


def hypothesis_variant(name: str) -> str:
    """hypotheses.jsonl variant -> its inference key: "" or "decode" -> decode, "pass1/" -> decode_pass1."""
    name = str(name or "").strip("/")
    return "decode" if name in ("", "decode") else f"decode_{name.removeprefix('decode_')}"


def groups_of(members: list[Member]) -> list[Group]:
    """Finished members by configuration, exactly as the report's tables group them (src/report/identity.py: the
    resolved config minus the seed and what does not change the experiment), each labelled by its arch and the
    identity's distinguishing keys ("encdec optim.lr=0.001"), with one marker per configuration of an arch."""
    from ..plots import MARKERS
    from .identity import group

    finished = {id(m.record): m for m in members if m.record}
    groups, per_arch = [], defaultdict(int)
    for label, _, records in sorted(group([m.record for m in finished.values()]), key=lambda g: str(g[0])):
        arch = str(config_of(records[0])["arch"])
        parts = [p for p in label.split() if not p.startswith("arch=")]
        base = " ".join([arch, *(p for p in parts if not p.startswith("device="))])
        groups.append(Group(" ".join([arch, *parts]), arch, MARKERS[per_arch[arch] % len(MARKERS)],
                            str(config_of(records[0])["device"]), base, [finished[id(r)] for r in records], label))
        per_arch[arch] += 1
    return groups


def mean_of(xs) -> float | None:
    xs = [float(x) for x in xs if isinstance(x, (int, float))]
    return statistics.fmean(xs) if xs else None


def mean_std(xs) -> tuple[float | None, float]:
    xs = [float(x) for x in xs if isinstance(x, (int, float))]
    if not xs:
        return None, 0.0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def headline_of(record: dict, metric: str | None) -> str | None:
    return metric or record.get("headline_metric")



def curve_label(label: str, variant: str) -> str:
    """"encdec", "nar [pass1]", "encdec [CTranslate2 int8]": a configuration's label and its curve's variant."""
    if variant.startswith("ct2_"):
        return f"{label} [CTranslate2 {variant.removeprefix('ct2_')}]"
    return label + ("" if variant == "decode" else f" [{variant.removeprefix('decode_')}]")


def curve_variants(record: dict) -> list[str]:
    """The decoding variants with by-batch rows ("decode", "decode_pass1", ...), then the CTranslate2 engines the
    run timed beside its "decode" (bench.ct2: "ct2_float32", "ct2_int8")."""
    inference = record.get("inference") or {}
    return [*inference, *ct2_engines(inference.get("decode"))]
