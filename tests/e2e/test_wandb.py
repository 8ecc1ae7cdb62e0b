"""A real W&B run in offline mode, read back from its .wandb log with `wandb leet inspect --json`."""
import json
import subprocess

from tests.conftest import run_main


def inspect(run_dir, *flags):
    out = subprocess.run(["wandb", "leet", "inspect", "--json", *flags, str(run_dir)], capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout


def test_offline_wandb_run_holds_the_logged_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline must be the default, not forced by the test
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    results = run_main(tmp_path, "arch=encdec", "task=translation", "debug=fast", "logger=wandb",
                       "logger.group=g1", "logger.tags=[t1,t2]")
    [run_dir] = list((tmp_path / "wandb").glob("offline-run-*"))
    summary = json.loads(inspect(run_dir, "--summary"))
    assert summary["state"] == "finished" and summary["exit_code"] == 0
    assert summary["project"] == "archbench" and summary["tags"] == ["t1", "t2"]
    assert summary["config"]["run_key"] == results["run_key"]
    assert summary["config"]["logger"]["group"] == "g1"
    logged = summary["summary"]
    for key, value in results["metrics"].items():
        assert abs(logged[key] - value) < 1e-6, key
    assert logged["inference/decode/latency_ms_batch1"] == results["inference"]["decode"]["latency_ms_batch1"]
    assert logged["params"] == results["params"]
    assert logged["attention"]["count"] == 1  # the cross-attention heatmap image
    records = [json.loads(line) for line in inspect(run_dir).splitlines() if line.strip()]
    history = [r for r in records if r.get("type") == "history"]
    assert sum("train/loss" in json.dumps(r) for r in history) >= 2  # one per training step (debug: every step)


def records_of(run_dir) -> list[dict]:
    return [json.loads(line) for line in inspect(run_dir).splitlines() if line.strip()]


def test_multirun_members_share_the_sweeps_group_and_the_report_run_logs_numbers(tmp_path):
    """`-m` without logger.group: every member is in the sweep's W&B group (so the dashboard averages seeds),
    declares the step and its best validation metric; the report run joins that group and logs typed tables."""
    import os
    import sys

    from src.loggers import STEP_METRIC, sweep_group, val_metric_of
    from tests.conftest import ROOT

    env = {**os.environ, "WANDB_API_KEY": "", "NETRC": str(tmp_path / "no-netrc"), "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_MODE", None)  # offline must be the default without a login
    sweep = tmp_path / "multirun"
    done = subprocess.run([sys.executable, "-m", "src.run", "-m", "arch=encdec", "seed=0,1", "debug=fast",
                           "logger=wandb", "threads=1", f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    members = sorted(p for p in sweep.iterdir() if (p / "results.json").exists())
    assert len(members) == 2
    for member in members:
        [run_dir] = list((member / "wandb").glob("offline-run-*"))
        records = records_of(run_dir)
        [run] = [r["run"] for r in records if r.get("type") == "run"]
        assert run["run_group"] == sweep_group(sweep)
        name, mode = val_metric_of(json.loads((member / "results.json").read_text())["config"])
        defined = {r["metric"].get("name"): r["metric"] for r in records if r.get("type") == "metric"}
        assert STEP_METRIC in defined
        assert defined[name]["step_metric"] == STEP_METRIC and defined[name]["summary"] == {mode: True, "last": True}
        summary = json.loads(inspect(run_dir, "--summary"))["summary"]
        if name in summary:  # logged: W&B keeps the best beside the last
            assert set(summary[name]) == {mode, "last"}

    report = subprocess.run([sys.executable, "-m", "src.report", str(sweep)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    [run_dir] = list((sweep / "report" / "wandb").glob("offline-run-*"))
    [run] = [r["run"] for r in records_of(run_dir) if r.get("type") == "run"]
    assert run["run_group"] == sweep_group(sweep) and run["job_type"] == "report"
    summary = json.loads(inspect(run_dir, "--summary"))["summary"]
    assert summary["report"]["_type"] == "table-file" and summary["plots/training_curves"]["_type"] == "image-file"
    for name in ("report", "runs"):
        table = json.loads((run_dir / "files" / summary[name]["path"]).read_text())
        rows = [dict(zip(table["columns"], row)) for row in table["data"]]
        numeric = ("n", "metric_mean", "params_mean", "train_tokens_per_s_mean") if name == "report" else (
            "seed", "metric", "params", "train_tokens_per_s")
        for row in rows:
            assert all(isinstance(row[c], (int, float)) for c in numeric), row
