"""A/B in one process: traced step token by token vs greedy blocks of 1 (argmax and bans inside the graph)."""
import statistics, sys, torch
from src.models.transformer import EncoderDecoder
from src.decoding.autoregressive import greedy
from src.decoding.static import StaticDecoder
from src.speed.timing import interleaved
torch.manual_seed(0)
m = EncoderDecoder(vocab_size=8000, d_model=256, n_heads=4, n_layers=3, d_ff=1024, dropout=0.0).eval()
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 12
with torch.no_grad():
    for b in [int(x) for x in sys.argv[1].split(",")]:
        src = torch.randint(5, 8000, (b, 32), generator=torch.Generator().manual_seed(1))
        step, block = StaticDecoder(m, compile=True, block_size=0), StaticDecoder(m, compile=True, block_size=1)
        fs, fb = (lambda d=d: greedy(d, src, 32, fixed_length=True) for d in (step, block))
        print(b, "identical", torch.equal(fs(), fb()), flush=True)
        t = interleaved({"step": fs, "block1": fb}, torch.device("cpu"), 3, reps)
        ms, mb = (statistics.median(t[k]) / 32 / b * 1e3 for k in ("step", "block1"))
        print(f"B={b}: step {ms:.3f} block1 {mb:.3f} ms/token  block/step speed {ms / mb:.2f}x", flush=True)
