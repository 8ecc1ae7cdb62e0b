#!/usr/bin/env bash
# The CPU benchmark tables (issue 8): run on a QUIET machine; the load average is recorded in every table.
#   experiments/benchmarks/run_cpu.sh experiments/benchmarks/cpu_$(date +%F)
set -euo pipefail
out=${1:?usage: run_cpu.sh OUT_DIR}
cd "$(dirname "$0")/../.."
mkdir -p "$out"
{ date -u +%FT%TZ; lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Flags' | cut -c1-200; uptime; } > "$out/device.txt"
run() { name=$1; shift; python -m src.bench "hydra.run.dir=$out/$name" bench.wandb=disabled "$@" | tee "$out/$name.txt"; }
run encdec_fp32_vs_bart                                        # the default: issue 8's CPU shape, EOS banned
run encdec_fast_vs_bart bench.compile=true                     # our fast paths (compiled training, static decode)
run encdec_bf16_vs_bart trainer.precision=bf16-mixed
run encdec_bf16_fast_vs_bart trainer.precision=bf16-mixed bench.compile=true
ARCHBENCH_MALLOC=tcmalloc run encdec_fast_tcmalloc_vs_bart bench.compile=true   # tcmalloc, when installed
ARCHBENCH_MALLOC=tcmalloc run encdec_bf16_fast_tcmalloc_vs_bart trainer.precision=bf16-mixed bench.compile=true
run encdec_sweep bench.methods=[greedy,beam,sample] bench.batch_sizes=[1,8,32,128] bench.beam_batch_sizes=null bench.modes=[fixed,natural] bench.peers=false bench.train=false bench.repeats=5
run nar arch=nar bench.batch_sizes=[1,8,32,128]
run decoder_vs_gpt2 arch=decoder bench.methods=[greedy] bench.batch_sizes=[1,32]
run encoder_vs_bert arch=encoder bench.batch_sizes=[1,32]
cat "$out"/*/bench.md > "$out/tables.md"
echo "tables: $out/tables.md"
