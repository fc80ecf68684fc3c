"""The store format recorded in data_dir/mail/.format: first start, detection, refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinymail.config import ConfigError
from tinymail.store import maildir, mbox
from tinymail.store.format import check_store_format, detect_formats, recorded_format


def test_first_start_records_the_configured_format(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    check_store_format(mail, "mbox")
    assert (mail / ".format").read_text() == "mbox\n"
    check_store_format(mail, "mbox")  # the same format again is fine
    with pytest.raises(ConfigError) as err:
        check_store_format(mail, "maildir")
    text = str(err.value)
    assert "\n" not in text
    assert 'store.format is "maildir"' in text and 'set [store] format = "mbox"' in text


@pytest.mark.parametrize("existing", ["maildir", "mbox"])
def test_unrecorded_data_dir_is_detected_from_its_mailboxes(tmp_path: Path, existing: str) -> None:
    mail = tmp_path / "mail"
    if existing == "mbox":
        mbox.deliver(mbox.folder_path(tmp_path, "bob"), b"Subject: x\n\ny\n", "a@x")
    else:
        maildir.deliver([mail / "bob"], b"Subject: x\n\ny\n")
    assert detect_formats(mail) == {existing}
    other = "mbox" if existing == "maildir" else "maildir"
    with pytest.raises(ConfigError):
        check_store_format(mail, other)
    assert recorded_format(mail) == existing  # recorded even though the start was refused


def test_mixed_or_unknown_is_refused(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    mbox.deliver(mbox.folder_path(tmp_path, "bob"), b"Subject: x\n\ny\n", "a@x")
    maildir.deliver([mail / "carol"], b"Subject: x\n\ny\n")
    with pytest.raises(ConfigError, match="both Maildir and mbox"):
        check_store_format(mail, "mbox")
    assert recorded_format(mail) is None
    (mail / ".format").write_text("mh\n")
    with pytest.raises(ConfigError, match="unknown store format"):
        check_store_format(mail, "mbox")
