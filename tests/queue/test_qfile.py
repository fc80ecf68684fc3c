"""tinymail.queue.qfile: the message file as sendmail writes it, readable by the Spool."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.queue import qfile
from tinymail.queue.model import Envelope
from tinymail.queue.spool import Spool, read_content


@given(
    st.text(),
    st.lists(st.text(), min_size=1, max_size=3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(0, 2**40),
    st.text(),
)
@settings(max_examples=300)
def test_envelope_json_is_json_dumps(
    sender: str, recipients: list[str], arrival: float, size: int, origin: str
) -> None:
    env = Envelope("Q1", sender, tuple(recipients), arrival, size, origin, "bounce")
    expected = json.dumps(env.to_json(), separators=(",", ":")).encode()
    assert qfile.encode_envelope(env.to_json()) == expected


def test_values_json_cannot_carry_are_refused() -> None:
    for value in (float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="not an envelope value"):
            qfile.encode_envelope({"arrival": value})


def test_stored_file_is_a_spool_message(tmp_path: Path) -> None:
    root = str(tmp_path / "queue")
    qfile.make_dirs(root)
    spool = Spool(tmp_path / "queue")
    for d in (spool.root, spool.incoming, spool.active, spool.state_dir, spool.corrupt):
        assert d.stat().st_mode & 0o777 == 0o700
    env = Envelope(qfile.new_qid(), "s@x.test", ("a@x.test", "b\u00e9@x.test"), 1.5, 4, "o", "")
    qfile.store(root, env.qid, b"abc\n", qfile.encode_envelope(env.to_json()))
    item = spool.load(env.qid)
    assert item.envelope == env
    assert read_content(item) == b"abc\n"
    assert os.listdir(spool.incoming) == []
    assert (spool.active / env.qid).stat().st_mode & 0o777 == 0o600


def test_failed_store_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    qfile.make_dirs(str(root))
    (root / "active").rmdir()
    with pytest.raises(FileNotFoundError):
        qfile.store(str(root), "Q1", b"x\n", b"{}")
    assert os.listdir(root / "incoming") == []
    (root / "active").mkdir()
    qfile.store(str(root), "Q2", b"x\n", b"{}")
    with pytest.raises(FileExistsError):  # never overwrites a message being received
        (root / "incoming" / "Q3").write_bytes(b"")
        qfile.store(str(root), "Q3", b"x\n", b"{}")
    assert os.listdir(root / "incoming") == ["Q3"]  # someone else's, left alone


@pytest.mark.parametrize("text", ['a"b', "a\\b", "\x7f", "tab\there", "caf\u00e9", "\udcff", ""])
def test_strings_that_need_escaping(text: str) -> None:
    fields: dict[str, str | int | float | list[str]] = {"sender": text, "recipients": [text]}
    assert qfile.encode_envelope(fields) == json.dumps(fields, separators=(",", ":")).encode()
