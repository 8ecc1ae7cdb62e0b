"""A/B in one process: HEAD's compiled step (torch.compile, guard-free) vs the traced direct step; greedy B=1, B=32,
beam 4 B=1; encdec bench shape, random weights; tokens compared. Needs 868016c's static.py beside today's:
    git show 868016c:src/decoding/static.py > src/decoding/static_old.py   (then delete it)
Measured at f8006ec (the traced step, greedy still picking its token outside the graph)."""
import statistics, sys, torch
from src.models.transformer import EncoderDecoder
from src.decoding.autoregressive import beam_search, greedy
from src.decoding import static as new, static_old as old
from src.speed.timing import interleaved
torch.manual_seed(0)
m = EncoderDecoder(vocab_size=8000, d_model=256, n_heads=4, n_layers=3, d_ff=1024, dropout=0.0).eval()
cases = sys.argv[1].split(",") if len(sys.argv) > 1 else ["g1", "b1", "g32"]
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 12
def run(dec, case):
    b = 32 if case == "g32" else 1
    src = torch.randint(5, 8000, (b, 32), generator=torch.Generator().manual_seed(1))
    if case.startswith("g"):
        return lambda: greedy(dec, src, 32, fixed_length=True)
    return lambda: beam_search(dec, src, 32, 4, fixed_length=True)[0]
with torch.no_grad():
    for case in cases:
        o, n = old.StaticDecoder(m, compile=True), new.StaticDecoder(m, compile=True)
        fo, fn = run(o, case), run(n, case)
        print(case, "identical", torch.equal(fo(), fn()), flush=True)
        t = interleaved({"old": fo, "new": fn}, torch.device("cpu"), 3, reps)
        mo, mn = (statistics.median(t[k]) / 32 * 1e3 for k in ("old", "new"))
        print(f"{case}: old {mo:.3f} new {mn:.3f} ms/token  new/old speed {mo / mn:.2f}x", flush=True)
