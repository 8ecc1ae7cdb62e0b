"""Encoder at prefill: eager vs compiled (compile_flat) at B=1 and 32, src 32."""
import statistics, sys, torch
from functools import partial
from src.models.transformer import EncoderDecoder
from src.decoding.traced import compile_flat
from src.decoding.linear import CPU_STEP_OPTIONS
from src.speed.timing import interleaved
torch.manual_seed(0)
m = EncoderDecoder(vocab_size=8000, d_model=256, n_heads=4, n_layers=3, d_ff=1024, dropout=0.0).eval()
params = list(m.encoder.parameters()) + list(m.encoder.buffers())
names = [n for n, _ in m.encoder.named_parameters()] + [n for n, _ in m.encoder.named_buffers()]
def enc(*xs):
    *ps, src = xs
    return torch.func.functional_call(m.encoder, dict(zip(names, ps)), (src,))
with torch.no_grad():
    for b in (1, 32):
        src = torch.randint(5, 8000, (b, 32))
        c = compile_flat(enc, params + [src], CPU_STEP_OPTIONS)
        print("close", (c(params + [src]) - m.encoder(src)).abs().max().item())
        t = interleaved({"eager": lambda: m.encoder(src), "compiled": lambda: c(params + [src])}, torch.device("cpu"), 3, 20)
        print(b, {k: round(statistics.median(v) * 1e3, 3) for k, v in t.items()}, "ms")
