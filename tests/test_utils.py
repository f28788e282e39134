"""utils.py: atomic writes (complete or absent), one-line errors for unreadable files."""
import pickle

import pytest
import torch

from asteroid_frugal.utils import (FrugalError, UnsafeFileError, atomic_path, describe_file, read_json, torch_load,
                                   torch_save_atomic, write_json_atomic, write_text_atomic)


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
