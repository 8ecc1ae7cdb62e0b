"""The whole GPU benchmark without Hydra (the GPU image has torch, transformers, no hydra): issue 8's workload W1
(encdec 6+6, d 512, 8 heads, FFN 2048, vocab 16k, src 32, 64 new tokens, bf16) against HF BART, the NAR of the
same shape, and the GPT-2-124M shape's training MFU at sequence 1024.

    python run_gpu.py OUT_DIR [WORKLOAD ...] [--compile] [--device cuda|cpu] [--tiny]

--compile turns on both of our fast paths (the compiled training forward and the compiled static decode step);
--device cpu --tiny is the smoke run (every workload at a tiny shape, one repeat: seconds, nothing to read in it)."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from src.speed.compare import benchmark, markdown  # noqa: E402

W1 = dict(beam_batch_sizes=[1], vocab=16000, d_model=512, n_heads=8, n_layers=6, d_ff=2048, src_len=32, new_tokens=64,
          device="cuda", precision="bf16-mixed", warmup=3, repeats=10, modes=["fixed"])
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
TINY = dict(vocab=100, d_model=16, n_heads=2, n_layers=1, d_ff=32, src_len=6, new_tokens=4, train_batch=2, warmup=0,
            repeats=1)  # --tiny: the smoke run's shape, at batch sizes 1 and 2


def workloads(args) -> dict[str, dict]:
    """The specs to run: WORKLOADS (or the ones named), on args.device, tiny with --tiny."""
    specs = {}
    for name, spec in WORKLOADS.items():
        if args.only and name not in args.only:
            continue
        spec = dict(spec, device=args.device, compile=args.compile)
        if args.tiny:
            spec.update(TINY, batch_sizes=[1, 2] if spec["batch_sizes"] else [])
        specs[name] = spec
    return specs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("only", nargs="*", help="workload names (default: all)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_intermixed_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, spec in workloads(args).items():
        result = benchmark(spec)
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
        table = markdown(result)
        (args.out / f"{name}.md").write_text(table)
        print(table, flush=True)


if __name__ == "__main__":
    main()
