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


def half_unit(printed: str) -> float:
    """Half a unit of the last printed digit: how far the printed figure may be from the true one."""
    decimals = len(printed.split(".", 1)[1]) if "." in printed else 0
    return 0.5 * 10.0 ** -decimals


def check_training_table(text: str, seconds: float) -> None:
    """The table's figures agree with each other at the precision they are printed (a 3x slower
    machine prints rates like 0.06 for 0.0622: compare intervals, never rounded figures)."""
    rates = {}
    for name in ("FrugalTasNet", "LSTMTasNet"):
        line = next(ln for ln in text.splitlines() if ln.startswith(name))
        step, audio_per_s, rss, gflop, share = re.findall(r"[\d.]+", line.split(")", 1)[1])
        step_lo, step_hi = float(step) - half_unit(step), float(step) + half_unit(step)
        rate_lo, rate_hi = float(audio_per_s) - half_unit(audio_per_s), float(audio_per_s) + half_unit(audio_per_s)
        assert seconds / step_hi <= rate_hi and (step_lo <= 0 or seconds / step_lo >= rate_lo), line
        rates[name] = (max(rate_lo, 0.0), rate_hi)
    ratio = re.search(r"stock .*?: ([\d.]+)x", text).group(1)
    (f_lo, f_hi), (s_lo, s_hi) = rates["FrugalTasNet"], rates["LSTMTasNet"]
    assert f_lo / s_hi <= float(ratio) + half_unit(ratio)
    assert s_lo == 0 or float(ratio) - half_unit(ratio) <= f_hi / s_lo


def test_training_table_check_holds_at_printed_precision():
    """The table a busy machine printed (0.5 s / 8.039 s = 0.0622 printed as 0.06)."""
    slow = ("FrugalTasNet (joint)       8.039       0.06          812            28.7       0.4%\n"
            "LSTMTasNet (2x mono)      14.201       0.04          901            56.4       0.4%\n"
            "throughput ratio FrugalTasNet / stock (medians of 1 alternated runs of 1 steps): 1.77x; "
            "per run pair 1.77-1.77x\n")
    check_training_table(slow, 0.5)
    with pytest.raises(AssertionError):  # an inconsistent table is still caught
        check_training_table(slow.replace("0.06 ", "0.09 "), 0.5)
    with pytest.raises(AssertionError):
        check_training_table(slow.replace("1.77x;", "2.50x;"), 0.5)


def test_training_benchmark_table():
    text = run("benchmarks/bench_training.py", "--batch", "1", "--seconds", "0.5", "--steps", "1", "--repeats", "1")
    check_training_table(text, 0.5)
    limit = float(re.search(r"measured in these runs (\d+) GFLOP/s", text).group(1))
    assert limit > 1


def test_inference_benchmark_table():
    text = run("benchmarks/bench_inference.py", "--minutes", "0.05", "--chunk_seconds", "1",
               "--overlap_seconds", "0.25", "--threads", "1", "--modes", "onepass", "chunked")
    rows = [ln for ln in text.splitlines() if ln.startswith("| 0.05 min")]
    assert [r.split("|")[2].strip() for r in rows] == ["onepass", "chunked"]
    snr = float(rows[1].split("|")[-2])
    assert snr > 60  # chunked fp32 separation is the one-pass separation


def test_roofline_counts_the_architectures_multiply_adds():
    """Multiply-adds per segment from the LSTM and linear formulas (not from the script's own code):
    LSTM 4H(I + H) per layer and direction, I = N then 2H; encoder 2 x (2L x N), masks 2H x 2N,
    decoder N x 2L once per source."""
    N = H = 16
    L = 220
    text = run("benchmarks/bench_roofline.py", "--threads", "1", "--size", "128", "--measured_rtf", "0.5",
               "--set", f"filterbank.n_filters={N}", f"masker.hidden_size={H}", "masker.n_layers=2")
    lstm = 2 * (4 * H * (N + H) + 4 * H * (2 * H + H))
    linear = 2 * (2 * L * N) + 2 * H * 2 * N + 2 * (N * 2 * L)
    assert f"{lstm:,} LSTM + {linear:,} linear multiply-adds per segment" in text
    gflop = 2 * (lstm + linear) * 44100 / L / 1e9
    printed = text.split(" GFLOP per second of stereo audio")[0].rsplit(" ", 1)[1]
    assert abs(float(printed) - gflop) <= half_unit(printed)
    bound = [ln for ln in text.splitlines() if ln.startswith("lower bound on the real-time factor, float32")]
    rate = float(text.split(" GFLOP/s")[0].rsplit(" ", 1)[1])                 # float32 products, 3 digits
    assert len(bound) == 1
    assert float(bound[0].rsplit(" ", 1)[1]) == pytest.approx(gflop / rate, rel=0.01)  # both printed to 3 digits


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
    assert re.search(r"torch threads 1, OMP wait policy (passive|openmp default) \(threads from --threads", text)
    times = {s: float(re.search(rf"train\s+{s}\s+([\d.]+) s", text).group(1)) for s in ("shipped", "threads1")}
    row = next(ln for ln in lines if ln.startswith("| idle | train |")).strip("|").split("|")
    assert float(row[2]) == pytest.approx(times["shipped"], abs=0.006)
    # the best setting (chosen from unrounded times): the fastest at the printed precision
    assert times[row[3].strip()] == pytest.approx(min(times.values()), abs=0.006)
    # the ratio comes from unrounded times: it lies within what the printed (2-decimal) times allow
    shipped, best, half = times["shipped"], min(times.values()), 0.005
    ratio = float(row[5].rstrip("x "))
    assert (shipped - half) / (best + half) - 0.005 <= ratio <= (shipped + half) / max(best - half, 1e-9) + 0.005


def test_bench_import_prints_its_table():
    text = run("benchmarks/bench_import.py", "--runs", "1")
    assert re.search(r"import asteroid_frugal, beyond +[\d.]+ s", text)
    assert re.search(r"command start, policy restart +[\d.]+ s +\([\d.]+x\)", text)


def test_gpu_check_cpu_fallback_prints_its_table():
    """benchmarks/gpu_check.sh without a GPU (or with --cpu): tiny sizes, said so, every row of the table."""
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu", "--steps", "1", "--song_seconds", "2",
                          "--bss_seconds", "2"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "no GPU: CPU fallback at tiny sizes" in text
    rows = [ln.split("|")[1].strip() for ln in text.splitlines() if ln.startswith("| ") and "measure" not in ln]
    assert [r.split(",")[0] for r in rows] == ["training step", "training step", "torch.backends.cudnn.enabled",
                                               "LSTM implementation (profiler", "separation RTF", "fast BSS Eval",
                                               "FLOPs per training step (3 x forward"]
    assert re.search(r"\| [\d.]+ steps/s \([\d.e-]+ s/step", text) and "lstm" in text.lower()


def test_scale_benchmark_measures_each_stage(tmp_path):
    """bench_scale.py on a tiny rehearsal set: one row per stage, memory and disk measured."""
    text = run("benchmarks/bench_scale.py", "--work", str(tmp_path), "--songs", "3", "--length_scale", "0.01",
               "--jobs", "1", "--tiny", "--stages", "make", "prepare", "shape")
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
            for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| stage")}
    assert list(rows) == ["make", "prepare", "shape"]
    for name, (wall, cpu, process, tree_rss, tree_pss, disk, note) in rows.items():
        assert float(wall) > 0 and float(process) > 0 and float(tree_rss) >= float(tree_pss) > 0, name
    assert float(rows["make"][5]) > 0 and float(rows["prepare"][5]) > float(rows["make"][5])  # wav > AAC


def test_bench_int8_backends_table():
    """Each int8 backend runs in its own process: PyTorch's, onnxruntime's exported graph, and the same
    graph read back from the cache the run before filled (same outputs, so the same SNR)."""
    text = run("benchmarks/bench_int8.py", "--parts", "backends", "--song_minutes", "0.02", "--set",
               "masker.hidden_size=8", "masker.n_layers=2", "filterbank.n_filters=16")
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"\| 0\.02 min \| ([\w-]+) \| ([\d.]+) \| ([\d.]+) \| [\d.]+ \| ([\d.-]+) \|", text)}
    assert set(rows) == {"float32", "torch-int8", "onnxruntime-int8", "onnxruntime-int8-cached"}
    assert rows["float32"][2] == "-" and float(rows["torch-int8"][2]) > 10
    assert rows["onnxruntime-int8"][2] == rows["onnxruntime-int8-cached"][2] and float(rows["onnxruntime-int8"][2]) > 10
