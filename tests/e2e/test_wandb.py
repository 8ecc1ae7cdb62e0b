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
