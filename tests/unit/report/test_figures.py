"""The report's figures (src/report/figures.py) on small hand-made sweeps: which figures are drawn, what they show
(read back from the drawn artists), one colour per arch, BLEU-by-length intervals against sacreBLEU's own."""
import json

import matplotlib.image as mpimg
import pytest
from sacrebleu.metrics import BLEU

from src.plots import arch_colour
from src.report.aggregate import parse_buckets
from src.report.collect import Member
from src.report.bleu_by_length import bucket_bleu_ci
from src.report.figures import draw_figures, pareto_front
from src.report.groups import variant_metric
from src.report.write import report_group, typed_table

BUCKETS = parse_buckets("0-3,3-6,6+")
SENTENCES = [("a b", "the cat sat", "the cat sat"), ("a b c d", "a dog ran home", "a dog ran away"),
             ("a b c d e", "one two three four five", "one two three four"), ("a", "hello world", "hello there world"),
             ("a b c d e f g", "the quick brown fox jumps", "the quick brown fox jumps"),
             ("a b c", "green eggs and ham", "green ham and eggs"), ("a b c d", "it is raining today", "it rains today")]


def member(arch, seed, task="translation", *, family="ar", history=None, hypotheses=None, by_batch=(1, 8),
           ms=10.0, quality=20.0) -> Member:
    headline = {"translation": "test/bleu", "lm": "test/perplexity", "classification": "test/accuracy"}[task]
    rows = [{"batch_size": b, "mode": "fixed", "ms_per_sentence": ms / b ** 0.5, "tokens_per_s": 100.0 * b}
            for b in by_batch]
    inference = {"decode": {"latency_ms_batch1": ms, "by_batch": rows}}
    metrics = {headline: quality + seed}
    if family == "nar":
        inference["decode_pass1"] = {"latency_ms_batch1": ms / 4,
                                     "by_batch": [{**r, "ms_per_sentence": r["ms_per_sentence"] / 4} for r in rows]}
        metrics[variant_metric(headline, "decode_pass1")] = quality - 5
    record = {"arch": arch, "task": task, "data": "synthetic", "size": "small", "seed": seed, "decode": {"method": "greedy"},
              "headline_metric": headline, "metrics": metrics, "params": 1000, "device": "cpu",
              "train": {"tokens_per_s": 500.0 + 10 * seed}, "inference": inference,
              "config": {"arch": {"name": arch, "family": family, "params": {}}}}
    history = history or {"train/loss": [[s, 5.0 - s / 10] for s in range(1, 6)]}
    return Member(f"/sweep/{arch}_s{seed}", record, "finished", None, history, hypotheses or [])


def hypotheses(shift=0):
    return [{"id": i, "variant": "", "source": src, "reference": ref, "hypothesis": hyp if (i + shift) % 2 else ref}
            for i, (src, hyp, ref) in enumerate(SENTENCES)]


def test_lm_only_sweep_has_no_ar_vs_nar_or_bleu_figure(tmp_path):
    figs = draw_figures([member("decoder", s, "lm") for s in (0, 1)], tmp_path, BUCKETS)
    assert "ar_vs_nar_batch" not in figs.plots and "bleu_by_length" not in figs.plots
    assert {"quality_vs_latency", "quality_vs_throughput", "training_curves"} <= set(figs.plots)
    assert not figs.crossings and not any("BLEU" in n or "NAR" in n for n in figs.notes)
    # perplexity: lower is better, so the faster and better point alone is on the front
    [panel] = {p["panel"] for p in figs.drawn["quality_vs_latency"]["decoder"]} - {"batch 8"}
    assert panel == "batch 1"


def test_translation_sweep_with_a_nar_run_draws_ar_vs_nar_and_bleu_by_length(tmp_path):
    members = [member("encdec", s, hypotheses=hypotheses(s)) for s in (0, 1)]
    members += [member("nar", s, family="nar", ms=30.0, hypotheses=hypotheses(s + 1)) for s in (0, 1)]
    figs = draw_figures(members, tmp_path, BUCKETS)
    assert {"ar_vs_nar_batch", "bleu_by_length", "quality_vs_latency"} <= set(figs.plots)
    for path in figs.plots.values():
        image = mpimg.imread(path)
        assert image.shape[:2] == (450, 700) and image.std() > 0.01
    assert set(figs.crossings) == {"nar vs encdec", "nar [pass1] vs encdec"}
    # without a NAR run, the same AR runs get no AR-vs-NAR figure
    assert "ar_vs_nar_batch" not in draw_figures(members[:2], tmp_path / "ar", BUCKETS).plots
    tmp = tmp_path / "ar"
    assert not (tmp / "ar_vs_nar_batch.png").exists()
    # BLEU by length: every bucket with its size and a 95 % interval around the mean over seeds
    ci = figs.bleu_by_length_ci["encdec"]
    assert {b: c["n"] for b, c in ci.items()} == {"0-3": 2, "3-6": 4, "6+": 1}
    assert all(c["low"] <= c["bleu"] <= c["high"] and c["seeds"] == 2 for c in ci.values())
    assert figs.bleu_by_length["encdec"] == {b: c["bleu"] for b, c in ci.items()}


def test_nar_is_compared_with_ar_on_our_loop_and_on_ctranslate2(tmp_path):
    """A bench.ct2 AR run's CTranslate2 rows are curves of their own in the AR-vs-NAR figure, each with its
    crossover against the NAR curves (fixed length: both emit the same tokens)."""
    encdec = member("encdec", 0, by_batch=(1, 8, 64), ms=10.0)
    encdec.record["inference"]["decode"]["ct2_float32"] = {  # 4x faster than ours: NAR at 5 ms never beats it
        "engine": "ctranslate2", "by_batch": [{"batch_size": b, "mode": "fixed", "ms_per_sentence": 2.5 / b ** 0.5,
                                                "tokens_per_s": 400.0 * b} for b in (1, 8, 64)]}
    nar = member("nar", 0, family="nar", by_batch=(1, 8, 64), ms=5.0)
    nar.record["inference"]["decode"]["by_batch"][-1]["ms_per_sentence"] = 2.0  # loses to ours at batch 64
    figs = draw_figures([encdec, nar], tmp_path, BUCKETS)
    drawn = figs.drawn["ar_vs_nar_batch"]
    assert "encdec [CTranslate2 float32]" in drawn
    assert {s["color"] for s in drawn["encdec [CTranslate2 float32]"]} == {arch_colour("encdec")}
    assert figs.crossings["nar vs encdec"]["status"] == "crosses"
    assert figs.crossings["nar vs encdec [CTranslate2 float32]"]["status"] == "nar_never_wins"
    assert figs.crossings["nar [pass1] vs encdec [CTranslate2 float32]"]["status"] == "nar_always_wins"


def test_nar_crossovers_are_against_the_baseline_when_it_is_ar(tmp_path):
    members = [member(arch, 0, by_batch=(1, 8), ms=ms) for arch, ms in (("decoder", 20.0), ("encdec", 10.0))]
    members.append(member("nar", 0, family="nar", by_batch=(1, 8), ms=5.0))
    assert set(draw_figures(members, tmp_path / "a", BUCKETS).crossings) == {"nar vs decoder", "nar [pass1] vs decoder"}
    figs = draw_figures(members, tmp_path / "b", BUCKETS, baseline="arch=encdec")
    assert set(figs.crossings) == {"nar vs encdec", "nar [pass1] vs encdec"}
    assert set(draw_figures(members, tmp_path / "c", BUCKETS, baseline="arch=nar").crossings) == {
        "nar vs decoder", "nar [pass1] vs decoder"}  # a NAR baseline: the first AR configuration


def test_quality_vs_latency_marks_the_pareto_front(tmp_path):
    members = [member("encdec", 0, ms=10.0, quality=30.0), member("rnn_attn", 0, ms=5.0, quality=20.0),
               member("decoder", 0, ms=20.0, quality=25.0)]  # slower and worse than encdec: not on the front
    figs = draw_figures(members, tmp_path, BUCKETS)
    [front] = [s for s in figs.drawn["quality_vs_latency"]["Pareto front"] if s["panel"] == "batch 1"]
    assert sorted(zip(front["x"], front["y"])) == [(5.0, 20.0), (10.0, 30.0)]
    assert {s["panel"] for s in figs.drawn["quality_vs_latency"]["encdec"]} == {"batch 1", "batch 8"}
    assert pareto_front([(1, 1), (2, 2), (3, 1.5)]) == [True, True, False]
    assert pareto_front([(1, 5.0), (2, 3.0)], higher=False) == [True, True]


def test_compute_curve_draws_every_history_point_mean_over_seeds(tmp_path):
    """Validation metric vs training FLOPs: every validation point of the history, the mean over seeds; NAR's
    val/loss on its own panel; tokens when a run has no FLOPs."""
    steps = list(range(100, 1100, 100))
    def hist(seed):
        return {"val/bleu": [[s, s / 100 + seed] for s in steps], "flops": [[s, 3e9 * s] for s in steps],
                "tokens": [[s, 40 * s] for s in steps], "train/loss": [[s, 1.0] for s in range(1, 1001)]}
    members = [member("encdec", s, history=hist(s)) for s in (0, 1)]
    members += [member("nar", 0, family="nar", history={"val/loss": [[s, 9 - s / 1000] for s in steps],
                                                         "flops": [[s, 2e9 * s] for s in steps]})]
    figs = draw_figures(members, tmp_path, BUCKETS)
    [line] = figs.drawn["validation_vs_compute"]["encdec (n=2)"]
    assert line["x"] == [3e9 * s for s in steps] and line["y"] == pytest.approx([s / 100 + 0.5 for s in steps])
    assert line["panel"] == "val/bleu"
    [nar] = figs.drawn["validation_vs_compute"]["nar (n=1)"]
    assert nar["panel"] != line["panel"] and "length loss" in nar["panel"] and len(nar["x"]) == len(steps)
    # training curves: every logged train/loss step of every seed
    assert [len(s["x"]) for s in figs.drawn["training_curves"]["encdec"]] == [1000, 1000]

    no_flops = [member("encdec", 0, history={k: v for k, v in hist(0).items() if k != "flops"})]
    [line] = draw_figures(no_flops, tmp_path / "t", BUCKETS).drawn["validation_vs_compute"]["encdec (n=1)"]
    assert line["x"] == [40.0 * s for s in steps]


def test_an_arch_has_one_colour_in_every_figure(tmp_path):
    members = [member("encdec", s, hypotheses=hypotheses(s), history={"val/bleu": [[1, 1.0], [2, 2.0]],
                                                                     "train/loss": [[1, 3.0], [2, 2.0]]})
               for s in (0, 1)]
    members += [member("nar", 0, family="nar", ms=30.0, hypotheses=hypotheses(1))]
    figs = draw_figures(members, tmp_path, BUCKETS)
    colours = {(fig, label.split(" (")[0]): {s["color"] for s in series}
               for fig, drawn in figs.drawn.items() for label, series in drawn.items() if label != "Pareto front"}
    encdec = {c for (fig, label), cs in colours.items() if label == "encdec" for c in cs}
    assert encdec == {arch_colour("encdec")}
    assert {fig for fig, label in colours if label == "encdec"} >= {"quality_vs_throughput", "quality_vs_latency",
                                                                   "validation_vs_compute", "training_curves",
                                                                   "bleu_by_length", "ar_vs_nar_batch"}
    assert {c for (fig, label), cs in colours.items() if label.startswith("nar") for c in cs} == {arch_colour("nar")}
    assert arch_colour("nar(passes=4)") == arch_colour("nar") != arch_colour("encdec")
    assert arch_colour("my_new_arch") == arch_colour("my_new_arch")  # a fixed colour for a name without one


def test_bucket_ci_with_one_seed_is_sacrebleus_own_bootstrap():
    rows = [{**r, "id": i} for i, r in enumerate(hypotheses() * 6)]
    [ci] = bucket_bleu_ci([rows], [(0, None)]).values()
    ours = BLEU().corpus_score([r["hypothesis"] for r in rows], [[r["reference"] for r in rows]], n_bootstrap=1000)
    assert ci["bleu"] == pytest.approx(ours.score) and ci["n"] == len(rows)
    assert (ci["high"] - ci["low"]) / 2 == pytest.approx(ours._ci, abs=1e-4)
    perfect = [{**r, "hypothesis": r["reference"]} for r in rows]  # every resample scores the same: zero width
    for c in bucket_bleu_ci([perfect, perfect], BUCKETS).values():
        assert c["low"] == pytest.approx(c["bleu"]) == pytest.approx(c["high"])


def test_wandb_tables_keep_numbers_numbers():
    columns, data = typed_table([{"arch": "encdec", "n": 2, "metric_mean": 1.5, "seeds": [0, 1], "p": None},
                                 {"arch": "nar", "n": 3, "metric_mean": None, "seeds": [0], "p": "n/a"}])
    assert columns == ["arch", "n", "metric_mean", "seeds", "p"]
    assert data == [["encdec", 2, 1.5, "0 1", None], ["nar", 3, None, "0", "n/a"]]
    _, mixed = typed_table([{"x": 1}, {"x": "one"}])
    assert mixed == [["1"], ["one"]]  # a column of numbers and text is text (W&B refuses mixed types)


def test_report_run_joins_the_sweeps_group(tmp_path):
    from src.loggers import sweep_group

    sweep = tmp_path / "multirun" / "2026-01-01" / "10-00-00"
    (sweep / "0_encdec").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("{}")
    members = [Member(str(sweep / "0_encdec"), {"config": {"logger": {"group": None}}}, "finished")]
    assert report_group(members, None) == sweep_group(sweep) and sweep_group(sweep).startswith("2026-01-01_10-00-00-")
    assert report_group(members, "mine") == "mine"
    named = [Member(str(sweep / "0_encdec"), {"config": {"logger": {"group": "g1"}}}, "finished")]
    assert report_group(named, None) == "g1"
    (sweep / "multirun.yaml").unlink()
    assert report_group(members, None) is None  # run dirs given one by one: no sweep to name
    assert json.dumps(sweep_group(sweep)) and sweep_group(sweep) != sweep_group(tmp_path / "other" / "10-00-00")


def test_runs_differing_in_a_setting_are_two_lines_named_by_it(tmp_path):
    from src.report.groups import groups_of

    members = [member("encdec", s) for s in (0, 1)] + [member("encdec", 0), member("nar", 0, family="nar")]
    members[2].record["config"]["optim"] = {"lr": 0.001}
    for m in members[:2]:
        m.record["config"]["optim"] = {"lr": 0.002}
    members[3].record["config"]["optim"] = {"lr": 0.002}
    groups = groups_of(members)
    assert sorted((g.label, len(g.members)) for g in groups) == [
        ("encdec optim.lr=0.001", 1), ("encdec optim.lr=0.002", 2), ("nar optim.lr=0.002", 1)]
    assert len({g.marker for g in groups if g.arch == "encdec"}) == 2  # one colour per arch, a marker per configuration
    drawn = draw_figures(members, tmp_path, BUCKETS).drawn["quality_vs_throughput"]
    assert {"encdec optim.lr=0.001 (n=1)", "encdec optim.lr=0.002 (n=2)"} <= set(drawn)
