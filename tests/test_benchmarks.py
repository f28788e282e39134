"""The benchmark scripts still run and their tables are self-consistent (tiny settings; the
figures themselves are not checked: speed belongs to the benchmarks, not to the tests)."""
import re
import subprocess
import sys

import pytest

from conftest import REPO


def run(*args):
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_training_benchmark_table():
    text = run("benchmarks/bench_training.py", "--batch", "1", "--seconds", "0.5", "--steps", "1", "--repeats", "1")
    rates = {}
    for name in ("FrugalTasNet", "LSTMTasNet"):
        line = next(ln for ln in text.splitlines() if ln.startswith(name))
        step, audio_per_s, rss, gflop, share = re.findall(r"[\d.]+", line.split(")", 1)[1])
        assert float(audio_per_s) == pytest.approx(0.5 / float(step), rel=0.02)
        rates[name] = float(audio_per_s)
    ratio = float(re.search(r"stock .*?: ([\d.]+)x", text).group(1))
    assert ratio == pytest.approx(rates["FrugalTasNet"] / rates["LSTMTasNet"], abs=0.02)
    limit = float(re.search(r"measured in these runs (\d+) GFLOP/s", text).group(1))
    assert limit > 1


def test_inference_benchmark_table():
    text = run("benchmarks/bench_inference.py", "--minutes", "0.05", "--chunk_seconds", "1",
               "--overlap_seconds", "0.25", "--threads", "1", "--modes", "onepass", "chunked")
    rows = [ln for ln in text.splitlines() if ln.startswith("| 0.05 min")]
    assert [r.split("|")[2].strip() for r in rows] == ["onepass", "chunked"]
    snr = float(rows[1].split("|")[-2])
    assert snr > 60  # chunked fp32 separation is the one-pass separation


def test_streaming_benchmark_table():
    text = run("benchmarks/bench_streaming.py", "--size", "32", "--seconds", "0.3", "--blocks", "256", "1024",
               "--sizes", "16", "--warmup", "1", "--variants", "float32", "int8", "onnxruntime")
    rows = [ln.split("|") for ln in text.splitlines() if ln.startswith("| ") and "N=" in ln]
    assert [(r[1].strip(), r[2].strip(), r[3].split()[0]) for r in rows] == [
        ("N=32", "float32", "256"), ("N=32", "float32", "1024"), ("N=32", "int8", "256"), ("N=32", "int8", "1024"),
        ("N=32", "onnxruntime", "256"), ("N=32", "onnxruntime", "1024"), ("N=16", "float32", "256"),
        ("N=16", "int8", "256"), ("N=16", "onnxruntime-int8", "256")]
    for r in rows:
        wall, cpu = (float(v) for v in r[4].split("/"))
        assert wall > 0 and cpu > 0
        median, p99 = (float(v) for v in r[6].split("/"))
        assert 0 < median <= p99
    assert rows[0][5].strip() == "1.00x" and rows[0][9].strip() in ("yes / yes", "yes / no", "no / yes", "no / no")


def test_defaults_benchmark_table():
    text = run("benchmarks/bench_defaults.py", "--commands", "train", "--states", "idle", "--settings", "shipped",
               "threads1", "--song_minutes", "0.02", "--train_steps", "1", "--excerpt_seconds", "0.25")
    lines = text.splitlines()
    assert "torch threads 1, OMP wait policy passive (threads from --threads" in text
    times = {s: float(re.search(rf"train\s+{s}\s+([\d.]+) s", text).group(1)) for s in ("shipped", "threads1")}
    row = next(ln for ln in lines if ln.startswith("| idle | train |")).strip("|").split("|")
    assert float(row[2]) == pytest.approx(times["shipped"], abs=0.006)
    assert row[3].strip() == min(times, key=times.get)
    assert float(row[5].rstrip("x ")) == pytest.approx(times["shipped"] / min(times.values()), abs=0.01)
