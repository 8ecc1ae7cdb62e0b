#!/usr/bin/env bash
# The CPU benchmark tables (issue 8): run on a QUIET machine; the load average is recorded in every table.
# With ctranslate2 installed the encdec / decoder tables also carry CTranslate2 float32 and int8 columns (timed in
# its own subprocess, best of 1 and all threads: speed.ct2, src/speed/deploy.py); the tcmalloc tables leave them out
# (the same CT2 numbers again).
#   experiments/benchmarks/run_cpu.sh experiments/benchmarks/cpu_$(date +%F)
set -euo pipefail
out=${1:?usage: run_cpu.sh OUT_DIR}
cd "$(dirname "$0")/../.."
mkdir -p "$out"
{ date -u +%FT%TZ; lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Flags' | cut -c1-200; uptime; } > "$out/device.txt"
run() { name=$1; shift; python -m src.speed "hydra.run.dir=$out/$name" speed.wandb=disabled "$@" | tee "$out/$name.txt"; }
run encdec_fp32_vs_bart                                        # the default: issue 8's CPU shape, EOS banned (+ CT2)
run encdec_fast_vs_bart speed.compile=true                     # our fast paths (compiled training, static decode)
run encdec_int8_vs_bart decode.int8=true speed.train=false  # int8 weights in the decode step (vs CT2 int8)
run encdec_bf16_vs_bart trainer.precision=bf16-mixed
run encdec_bf16_fast_vs_bart trainer.precision=bf16-mixed speed.compile=true
ARCHBENCH_MALLOC=tcmalloc run encdec_fast_tcmalloc_vs_bart speed.compile=true speed.ct2=false   # tcmalloc, when installed
ARCHBENCH_MALLOC=tcmalloc run encdec_bf16_fast_tcmalloc_vs_bart trainer.precision=bf16-mixed speed.compile=true speed.ct2=false
run encdec_sweep speed.methods=[greedy,beam,sample] speed.batch_sizes=[1,8,32,128] speed.beam_batch_sizes=null speed.modes=[fixed,natural] speed.peers=false speed.train=false speed.repeats=5
run nar arch=nar speed.batch_sizes=[1,8,32,128]
run decoder_vs_gpt2 arch=decoder speed.methods=[greedy] speed.batch_sizes=[1,32]   # + CT2 Generator
run encoder_vs_bert arch=encoder speed.batch_sizes=[1,32]
cat "$out"/*/bench.md > "$out/tables.md"
echo "tables: $out/tables.md"
