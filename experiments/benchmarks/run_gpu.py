"""The whole GPU benchmark without Hydra (the GPU image has torch, transformers, no hydra): issue 8's workload W1
(encdec 6+6, d 512, 8 heads, FFN 2048, vocab 16k, src 32, 64 new tokens, bf16) against HF BART, the NAR of the
same shape, and the GPT-2-124M shape's training MFU at sequence 1024. Usage: python run_gpu.py OUT_DIR [--compile]"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from src.bench_core import benchmark, markdown  # noqa: E402

W1 = dict(beam_batch_sizes=[1], vocab=16000, d_model=512, n_heads=8, n_layers=6, d_ff=2048, src_len=32, new_tokens=64, device="cuda",
          precision="bf16-mixed", warmup=3, repeats=10, modes=["fixed"], compile="--compile" in sys.argv)
WORKLOADS = {
    "w1_encdec_vs_bart": dict(W1, methods=["greedy", "beam"], batch_sizes=[1, 64], train_batch=128),
    "w1_encdec_sweep": dict(W1, methods=["greedy", "sample"], batch_sizes=[8, 32, 128], modes=["fixed", "natural"],
                            train=False, peers=False),
    "w1_nar": dict(W1, arch="nar", model="src.models.nar.CMLM", arch_params={"norm_first": True},
                   batch_sizes=[1, 8, 32, 64, 128], train_batch=128, peers=False),
    "gpt2_124m_seq1024": dict(W1, arch="decoder", model="src.models.transformer.DecoderLM", vocab=50257, d_model=768,
                              n_heads=12, n_layers=12, d_ff=3072, src_len=512, new_tokens=512, methods=[],
                              batch_sizes=[], train_batch=8, repeats=10),
}

if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    only = [a for a in sys.argv[2:] if not a.startswith("--")]
    for name, spec in WORKLOADS.items():
        if only and name not in only:
            continue
        result = benchmark(spec)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))
        table = markdown(result)
        (out / f"{name}.md").write_text(table)
        print(table, flush=True)
