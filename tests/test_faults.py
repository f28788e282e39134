"""Fault cases: bad values give one-line errors naming the problem, never a traceback."""
import subprocess
import sys

from conftest import REPO


def test_bad_runtime_values_are_one_line_errors(tmp_path):
    for args, message in ((["--threads", "0"], "error: --threads: threads must be an integer >= 1"),
                          (["--set", "runtime.omp_wait_policy=spin"],
                           "error: runtime.omp_wait_policy: omp_wait_policy must be passive, active or null")):
        proc = subprocess.run([sys.executable, "local/evaluate.py", "--exp_dir", str(tmp_path), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
