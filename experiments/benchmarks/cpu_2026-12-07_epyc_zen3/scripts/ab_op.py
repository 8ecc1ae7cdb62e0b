"""Per-call cost of the prepacked GEMM at 32 rows: torch.library.custom_op (what 868016c used) vs ops defined through
torch.library.Library (what src/decoding/linear.py uses since) vs the bare oneDNN call.
Run from the repository root: python experiments/benchmarks/cpu_2026-12-07_epyc_zen3/scripts/ab_op.py"""
import statistics, time, torch
from src.decoding.linear import prepack, _PREPACKED


@torch.library.custom_op("abtest::custom", mutates_args=())
def custom(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, _PREPACKED[handle], None, "none", [], "")


@custom.register_fake
def _(x, handle, out_features):
    return x.new_empty(x.shape[0], out_features)


lib = torch.library.Library("abtest", "FRAGMENT")
lib.define("pl(Tensor x, int handle, int out_features) -> Tensor")
def _impl(x, handle, out_features):
    return torch.ops.mkldnn._linear_pointwise(x, _PREPACKED[handle], None, "none", [], "")
lib.impl("pl", _impl, "CPU")
lib.define("pl2(Tensor x, int handle, int out_features) -> Tensor")
LP = torch.ops.mkldnn._linear_pointwise.default
D = {}
def _impl2(x, handle, out_features):
    return LP(x, D[handle], None, "none", [], "")
lib.impl("pl2", _impl2, "CPU")
torch.manual_seed(0)
for n, k in ((256, 256), (8000, 256)):
    w = torch.randn(n, k)
    h, blocked = prepack(w)
    x = torch.randn(32, k); D[h] = blocked
    fns = {"custom_op": lambda: torch.ops.abtest.custom.default(x, h, n),
           "library": lambda: torch.ops.abtest.pl.default(x, h, n),
           "library2": lambda: torch.ops.abtest.pl2.default(x, h, n),
           "bare": lambda: torch.ops.mkldnn._linear_pointwise(x, blocked, None, "none", [], "")}
    res = {k2: [] for k2 in fns}
    for _ in range(30):
        for k2, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(50): f()
            res[k2].append((time.perf_counter() - t0) / 50)
    print(n, k, {k2: round(statistics.median(v) * 1e6, 1) for k2, v in res.items()}, "us")
