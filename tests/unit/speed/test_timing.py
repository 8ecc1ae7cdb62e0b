"""The one timing loop (src/speed/timing.py): warm-up untimed, fns interleaved within each repeat, at least one
repeat, the last output kept; spread; the machine record (nothing timed against a threshold)."""
from src.speed.timing import cpu, cpu_line, interleaved, machine, measure, spread_of, timed_runs


def test_warmup_is_untimed_and_fns_alternate_within_each_repeat():
    calls = []
    fns = {"a": lambda: calls.append("a") or "A", "b": lambda: calls.append("b") or "B"}
    times, last = timed_runs(fns, "cpu", warmup=1, repeats=2)
    assert calls == ["a", "b"] * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2} and last == {"a": "A", "b": "B"}
    assert set(interleaved(fns, "cpu", 0, 3)) == {"a", "b"}


def test_measure_runs_at_least_once_and_returns_the_last_output():
    outs = iter(range(10))
    times, out = measure(lambda: next(outs), "cpu", warmup=2, repeats=0)
    assert len(times) == 1 and out == 2 and all(t >= 0 for t in times)


def test_spread_and_machine():
    assert spread_of([1.0, 1.0, 1.0]) == 0.0 and spread_of([1.0, 2.0, 3.0]) == 1.0 and spread_of([0.0]) == 0.0
    m = machine()
    assert m["threads"] >= 1 and m["allocator"] in ("glibc", "tcmalloc", "unknown") and "load_avg_1min" in m


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 amx_tile amx_bf16 amx_int8 avx512_vnni

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse
"""


def test_cpu_record_names_the_model_and_the_isa_flags_that_pick_kernels():
    c = cpu(CPUINFO)
    assert c["model"] == "Intel(R) Xeon(R) Processor"
    assert c["isa"] == ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"]
    assert "sse" not in c["isa"] and c["cores"] >= 1
    assert cpu("model name : Old\nflags : sse2 avx2\n")["isa"] == ["avx2"]
    line = cpu_line({**c, "l3_mib": 300.0, "cores": 2})
    assert line == ("Intel(R) Xeon(R) Processor · avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile"
                    " · 300 MiB L3 · 2 cores")
    assert machine()["cpu"]["logical_cpus"] >= 1
