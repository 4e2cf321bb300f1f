"""The shared file helpers: JSONL errors name file and line; atomic writes leave nothing behind on failure."""

import pytest

from ausweep.config import FileFormatError
from ausweep.files import jsonl_records, write_jsonl_atomic, write_text_atomic


def test_jsonl_round_trip_skips_blank_lines(tmp_path):
    path = write_jsonl_atomic(tmp_path / "sub" / "a.jsonl", [{"x": 1}, {"y": "é"}])
    path.write_text(path.read_text() + "\n\n")
    assert list(jsonl_records(path)) == [(1, {"x": 1}), (2, {"y": "é"})]


@pytest.mark.parametrize("text, match", [('{"x": 1}\n[1, 2]\n', r"b.jsonl \(line 2\): expected a JSON object, got list"),
                                         ('{"x": 1}\n\n{oops\n', r"b.jsonl \(line 3\): invalid JSON")])
def test_jsonl_errors_name_file_and_line(tmp_path, text, match):
    (tmp_path / "b.jsonl").write_text(text)
    with pytest.raises(FileFormatError, match=match):
        list(jsonl_records(tmp_path / "b.jsonl"))
    with pytest.raises(FileFormatError, match="missing.jsonl: file does not exist"):
        list(jsonl_records(tmp_path / "missing.jsonl"))


def test_failed_atomic_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = write_text_atomic(tmp_path / "m.json", "old")

    def records():
        yield {"a": 1}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, records())
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.json"]
