"""tools/bench/throughput.py runs end to end (a smoke run: digits, float32 and bf16 + channels_last, the
`before` row in a fresh process with glibc's default allocator) and prints its table."""
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "tools" / "bench" / "throughput.py"


def test_throughput_bench_prints_every_row(capsys):
    spec = importlib.util.spec_from_file_location("throughput_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--sets", "digits", "--modes", "fp32", "bf16_cl"])
    assert [r["mode"] for r in rows] == ["fp32", "bf16_cl", "before"]
    assert all(r["step"] > 0 for r in rows) and all(r["encoder"] > 0 and r["epoch"] > 0 for r in rows[:2])
    assert rows[1]["channels_last"] and rows[1]["amp"] == "bf16" and rows[0]["amp"] == "off"
    out = capsys.readouterr().out
    assert "| digits (convnet, 32, 1,437) | bf16_cl |" in out and "fp32, before" in out
