"""utils.py: atomic writes (complete or absent; a full disk is one line), one-line errors for unreadable files."""
import errno
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asteroid_frugal.utils import (DiskFullError, FrugalError, UnsafeFileError, atomic_path, describe_file,
                                   disk_full_message, read_json, torch_load, torch_save_atomic, write_json_atomic,
                                   write_text_atomic)
from disk_helpers import no_space, small_disk


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"sdr": 1.0})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert read_json(path) == {"sdr": 1.0} and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    write_text_atomic(tmp_path / "sub" / "a.txt", "x")   # folders made as needed
    assert (tmp_path / "sub" / "a.txt").read_text() == "x"


def test_broken_or_missing_json_is_one_line(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FrugalError, match=r"bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(FrugalError, match=r"missing.json: file not found"):
        read_json(tmp_path / "missing.json")


class Payload:
    def __reduce__(self):
        return (print, ("ran",))


def test_torch_load_reads_tensors_and_refuses_code(tmp_path, capsys):
    torch_save_atomic({"w": torch.ones(2)}, tmp_path / "ok.pth")
    assert torch.equal(torch_load(tmp_path / "ok.pth", "a model file")["w"], torch.ones(2))
    torch.save({"x": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeFileError, match="refused"):
        torch_load(tmp_path / "evil.pth", "a model file")
    assert "ran" not in capsys.readouterr().out
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}))   # not torch.save's format: refused too
    with pytest.raises(FrugalError, match="plain.pkl"):
        torch_load(tmp_path / "plain.pkl", "a model file")
    (tmp_path / "song.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(FrugalError) as err:
        torch_load(tmp_path / "song.wav", "a model file")
    assert str(err.value) == f"{tmp_path / 'song.wav'}: not a model file: it is a WAV audio file"
    assert describe_file(tmp_path / "nothing") == "an unreadable file"


# ------------------------------------------------------------------------------ a full disk
def test_a_full_disk_is_one_line_naming_the_path_and_the_space_needed(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"sdr": 1.0})
    with pytest.raises(DiskFullError) as err:
        with atomic_path(path, needed_bytes=5_100_000) as tmp:
            tmp.write_bytes(b"x" * 1000)
            raise no_space(tmp)
    line = str(err.value)
    assert line.startswith(f"{path}: disk full: needed 5.1 MB, ") and "free there" in line and "\n" not in line
    assert isinstance(err.value, FrugalError)     # printed as "error: ..." by the commands, exit 2
    assert read_json(path) == {"sdr": 1.0} and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    # size unknown to the caller: at least what was written before the disk filled up
    with pytest.raises(DiskFullError,
                       match=r"new.bin: disk full: needed more than 2.0 kB \(written before it filled up\), "):
        with atomic_path(tmp_path / "new.bin") as tmp:
            tmp.write_bytes(b"x" * 2000)
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert not (tmp_path / "new.bin").exists() and len(list(tmp_path.iterdir())) == 1
    # other errors pass unchanged
    with pytest.raises(OSError, match="Permission denied"):
        with atomic_path(tmp_path / "other.bin"):
            raise OSError(errno.EACCES, "Permission denied")
    assert disk_full_message(tmp_path / "a" / "b.wav", 2048).startswith(f"{tmp_path / 'a' / 'b.wav'}: disk full: "
                                                                          "needed 2.0 kB, ")


def test_every_writer_reports_a_full_disk_in_one_line(tmp_path, monkeypatch):
    def full(self, data):
        raise no_space(self)

    monkeypatch.setattr(Path, "write_bytes", full)
    text = "é" * 600
    for write, path, needed in ((lambda p: write_text_atomic(p, text), tmp_path / "a.txt", "1.2 kB"),
                                (lambda p: write_json_atomic(p, {"k": text}), tmp_path / "a.json", "3.6 kB"),
                                (lambda p: torch_save_atomic({"w": torch.zeros(1000)}, p), tmp_path / "a.pth", "")):
        with pytest.raises(DiskFullError, match=rf"^{re.escape(str(path))}: disk full: needed {needed}"):
            write(path)
    assert list(tmp_path.iterdir()) == []


def test_a_writer_that_hides_the_os_error_on_a_full_disk_is_recognised(tmp_path):
    """libsndfile says "System error." where the OS said ENOSPC: a real full disk (root only)."""
    with small_disk(tmp_path / "disk", 300) as disk:
        audio = np.zeros((2, 8000 * 10), dtype=np.float32)                   # 320 kB as 16-bit WAV
        with pytest.raises(DiskFullError) as err:
            with atomic_path(disk / "song.wav") as tmp:
                sf.write(str(tmp), audio.T, 8000, subtype="PCM_16")
        assert str(err.value).startswith(f"{disk / 'song.wav'}: disk full: needed more than ")
        assert list(disk.iterdir()) == []
        with pytest.raises(ValueError):          # with space free, the writer's own errors are its own
            with atomic_path(disk / "x.wav") as tmp:
                sf.write(str(tmp), audio.T, 8000, subtype="NOT_A_SUBTYPE")
