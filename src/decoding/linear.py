"""x·Wᵀ + b of the static decode step (static.py) on CPU, in the form that streams W fastest at each row count
(`decode_linear`), and what those forms need: the inductor options of the compiled step (`CPU_STEP_OPTIONS`) and
oneDNN's weights blocked once (`prepack`, `prepacked_linear`). Measured figures behind these choices:
experiments/benchmarks/README.md and its cpu_2026-12-04_epyc/ folder."""
from __future__ import annotations

import itertools
import weakref

import torch

REDUCTION_ROWS = 4  # rows of x up to which a compiled CPU step computes x·Wᵀ as inductor's reduction (decode_linear)
# inductor options of the compiled CPU step: store every pointwise result of more than 4 ops (a layer norm's output,
# the FFN's GELU) instead of inlining it into its consumer. Inlined into a one-row reduction Σ_k W[:, k]·x[k]
# (`decode_linear`), x would be recomputed for each of W's rows: the layer norm 256-1,024 times and the GELU's erf
# 256 × 1,024 times a layer, more work than the reduction itself
CPU_STEP_OPTIONS = {"realize_opcount_threshold": 4}
# whether the compiled one-row reduction reads int8 weights as int8 (`decode_linear`'s q8, which weights.py's int8
# copies carry only then): only where inductor vectorizes their conversion to fp32 (AVX-512). On AVX2 its loop is
# 6.8x the fp32 one (8000×256: 1,465 vs 214 µs, EPYC Zen 3), so there the step reads the fp32 s ⊙ Q instead: the same
# weights, fp32's speed
INT8_REDUCTION = torch.backends.cpu.get_cpu_capability().startswith("AVX512")

_PREPACKED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # handle -> oneDNN's blocked copy of W
_next_handle = itertools.count()


# an op of our own because a blocked (mkldnn) tensor cannot be an input of a compiled graph: inductor calls it as an
# extern kernel, with the handle as a constant. Defined through torch.library.Library rather than custom_op: the
# latter's wrappers cost ~35 µs more a call, ~0.8 ms a decode step at 32 rows (22 GEMMs)
_LIBRARY = torch.library.Library("archbench", "DEF")
_LIBRARY.define("prepacked_linear(Tensor x, int handle, int out_features) -> Tensor")
_linear_pointwise = torch.ops.mkldnn._linear_pointwise.default


def _prepacked_linear(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    """x·Wᵀ by oneDNN on the copy of W it blocked for its GEMM once (`_PREPACKED[handle]`, `prepack`), instead of
    MKL packing W again at every call."""
    return _linear_pointwise(x, _PREPACKED[handle], None, "none", [], "")


_LIBRARY.impl("prepacked_linear", _prepacked_linear, "CPU")


@torch.library.register_fake("archbench::prepacked_linear", lib=_LIBRARY)
def _(x, handle, out_features):
    return x.new_empty(x.shape[0], out_features)


prepacked_linear = torch.ops.archbench.prepacked_linear.default


def can_prepack(dtype: torch.dtype) -> bool:
    """Whether oneDNN blocks weights of `dtype` on this CPU: fp32 wherever oneDNN is built in; bf16 only with
    avx512bw/vl/dq or avx_ne_convert (without them it refuses, and a bf16 GEMM would crawl anyway)."""
    if not torch.backends.mkldnn.is_available():
        return False
    return dtype == torch.float32 or (dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def prepack(weight: torch.Tensor, handle: int | None = None) -> tuple[int, torch.Tensor]:
    """`weight` blocked for oneDNN's GEMM, registered under `handle` (a new one by default): (handle, blocked).
    The caller keeps the blocked tensor alive (`_PREPACKED` holds it weakly)."""
    handle = next(_next_handle) if handle is None else handle
    blocked = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
    _PREPACKED[handle] = blocked
    return handle, blocked


def decode_linear(x: torch.Tensor, weight: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None,
                  q8: tuple[torch.Tensor, torch.Tensor] | None = None, packed: int | None = None):
    """x·Wᵀ + b of a decode step in the form that streams W fastest (nn.Linear's x·Wᵀ is the slowest at every row
    count measured: on CPU the step is bound by reading weights that no longer fit in cache):
        up to REDUCTION_ROWS rows, compiling:
                             y[n, r] = Σ_k W[n, k]·x[r, k]   a reduction inductor turns into its own dot-product loops,
                                                  fused with the rest of the step into one C++ kernel; n outermost,
                                                  so each row of W is read once for all the rows of x (beam 4);
                             s ⊙ Σ_k Q[n, k]·x[k]  the same over int8 weights W ≈ s ⊙ Q (`q8` = (Q, s),
                                                  `int8_weights`), dequantized inside the loop: a quarter of the
                                                  bytes (one row only: at more, inductor's int8 loops are slower)
        more rows, compiling: oneDNN's GEMM on W blocked once (`packed`: a `prepacked_linear` handle)
        one row, eager:      x·(Wᵀ contiguous)    a GEMV down a column-major copy of W (`weight_t`)
        more rows, eager:    (W·xᵀ)ᵀ              a tall-skinny GEMM that streams W once (MKL's GEMM wins again)
    With `q8`, W and Wᵀ are s ⊙ Q in fp32, so every row count computes with the same int8 weights."""
    rows = x.reshape(-1, x.size(-1))
    if torch.compiler.is_compiling() and rows.size(0) <= (1 if q8 else REDUCTION_ROWS):  # inductor's loops, fused
        y = ((weight if q8 is None else q8[0]).float()[:, None, :] * rows.float()).sum(-1)  # (N, rows)
        y = (y if q8 is None else y * q8[1][:, None]).t().to(rows.dtype)
    elif torch.compiler.is_compiling() and packed is not None:
        y = prepacked_linear(rows.to(weight.dtype), packed, weight.size(0))
    else:
        y = rows @ weight_t if rows.size(0) == 1 else (weight @ rows.t()).t()
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], y.size(-1))
