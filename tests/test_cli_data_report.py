"""local/data_report.py: one report per manifest given, the target and silence level as flags."""
from asteroid_frugal.cli.data_report import main
from test_reports_data import manifest  # noqa: F401  (the fixture)


def test_reports_each_manifest(manifest, capsys):  # noqa: F811
    out = main([str(manifest), str(manifest), "--target", "vocals", "--silence_db", "-40"])
    assert [r["silence_db"] for r in out["reports"]] == [-40, -40]
    printed = capsys.readouterr().out
    assert printed.count("(vocals): 2 songs, 3 excerpts") == 2 and "(< -40 dBFS, 100 ms)" in printed
