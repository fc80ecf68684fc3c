"""The mbox store: delivery, mboxrd quoting, metadata, UIDs, rewrites and torn appends."""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymail.store import mbox
from tinymail.store.mbox_folder import MboxFolder, render, state_path

MSG = b"Return-Path: <alice@example.test>\nSubject: hello\nFrom: alice@example.test\n\nHi Bob\n"


def test_folder_path_layout(tmp_path: Path) -> None:
    assert mbox.folder_path(tmp_path, "bob@example.test") == (
        tmp_path / "mail" / "bob@example.test" / "INBOX"
    )
    assert mbox.folder_path(tmp_path, "bob", "Archive.2024").name == "Archive.2024"
    for bad in ("", ".hidden", "a/b", "INBOX.lock"):
        with pytest.raises(ValueError):
            mbox.folder_path(tmp_path, "bob", bad)


def test_delivery_is_readable_by_python_mailbox(tmp_path: Path) -> None:
    path = tmp_path / "INBOX"
    mbox.deliver(path, MSG, "alice@example.test", when=0)
    mbox.deliver(path, MSG.replace(b"hello", b"second"), "", when=0)
    data = path.read_bytes()
    assert data.startswith(b"From alice@example.test ")
    assert b"\n\nFrom MAILER-DAEMON " in data and data.endswith(b"Hi Bob\n\n")
    box = mailbox.mbox(path, create=False)
    try:
        messages = [box.get_bytes(key) for key in box.iterkeys()]
    finally:
        box.close()
    assert messages == [MSG, MSG.replace(b"hello", b"second")]


def test_mboxrd_quoting_is_reversible(tmp_path: Path) -> None:
    body = b"From here\n>From there\n>>From everywhere\nFromage\n From x\n"
    message = b"Subject: q\n\n" + body
    path = tmp_path / "INBOX"
    mbox.deliver(path, message, "a@x")
    stored = path.read_bytes()
    assert b"\n>From here\n>>From there\n>>>From everywhere\nFromage\n From x\n" in stored
    folder = MboxFolder(path)
    (entry,) = folder.sync().entries
    assert entry.uid is not None
    assert folder.read(entry.uid) == message


def test_incoming_metadata_headers_are_stripped(tmp_path: Path) -> None:
    forged = (
        b"Status: RO\nX-Status: DF\nX-UID: 999\nX-IMAPbase: 1 5000\nX-IMAP: 1 5000\n"
        b"X-Keywords: $Forged\nContent-Length: 3\n\tcontinued\nSubject: s\n\nbody\n"
    )
    path = tmp_path / "INBOX"
    mbox.deliver(path, forged, "a@x")
    assert path.read_bytes().split(b"\n", 1)[1] == b"Subject: s\n\nbody\n\n"
    folder = MboxFolder(path)
    parsed = folder.sync()
    assert parsed.last_uid == 1 and parsed.entries[0].uid == 1
    assert parsed.entries[0].flags == frozenset()


def test_uids_are_persisted_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "INBOX"
    folder = MboxFolder(path)
    for n in range(3):
        mbox.deliver(path, MSG.replace(b"Hi", b"Hi %d" % n), "a@x")
    first = folder.sync()
    assert [e.uid for e in first.entries] == [1, 2, 3] and first.uidvalidity > 0
    again = MboxFolder(path).sync()  # a new session: same UIDs, same UIDVALIDITY
    assert [e.uid for e in again.entries] == [1, 2, 3]
    assert again.uidvalidity == first.uidvalidity
    mbox.deliver(path, MSG, "a@x")
    inode = os.stat(path).st_ino
    assert [e.uid for e in folder.sync().entries] == [1, 2, 3, 4]
    # New UIDs cost no rewrite of the mbox (Dovecot's lazy writes): the side file has them ...
    assert os.stat(path).st_ino == inode and b"X-UID" not in path.read_bytes()
    assert [e.uid for e in MboxFolder(path).sync().entries] == [1, 2, 3, 4]
    # ... until the next rewrite puts them into the file, where Dovecot and mutt see them.
    folder.store_flags({2: frozenset({"\\Seen"})})
    header = path.read_bytes().split(b"\n\n", 1)[0]
    assert b"X-IMAPbase: %d 0000000004" % first.uidvalidity in header
    assert not state_path(path).exists()
    assert [e.uid for e in MboxFolder(path).sync().entries] == [1, 2, 3, 4]


def test_uids_survive_other_programs(tmp_path: Path) -> None:
    """Another program appending, adding Status headers or removing a message keeps every
    other message's UID, and a UID is never given to another message."""
    path = tmp_path / "INBOX"
    folder = MboxFolder(path)
    for n in range(2):
        mbox.deliver(path, MSG.replace(b"Hi", b"Hi %d" % n), "a@x")
    folder.store_flags({1: frozenset({"\\Flagged"})})  # UIDs 1, 2 now in the file
    for n in range(2, 6):
        mbox.deliver(path, MSG.replace(b"Hi", b"Hi %d" % n), "a@x")
    before = folder.sync()
    assert [e.uid for e in before.entries] == [1, 2, 3, 4, 5, 6]
    # mutt-like: mark message 4 read (a Status header) and delete message 5, in place.
    data = path.read_bytes()
    e4, e5 = before.entries[3], before.entries[4]
    data = (
        data[: e4.header_start] + b"Status: RO\n" + data[e4.header_start : e5.start]
        + data[before.entries[5].start :]
    )  # fmt: skip
    path.write_bytes(data)
    mbox.deliver(path, MSG.replace(b"Hi", b"Hi 6"), "a@x")
    for view in (folder.sync(), MboxFolder(path).sync()):
        assert [e.uid for e in view.entries] == [1, 2, 3, 4, 6, 7]
        assert view.entries[3].flags == frozenset({"\\Seen"})
    assert folder.read(6) == MSG.replace(b"Hi", b"Hi 5")


def test_flags_and_expunge_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "INBOX"
    folder = MboxFolder(path)
    for n in range(3):
        mbox.deliver(path, MSG.replace(b"Hi", b"Hi %d" % n), "a@x")
    folder.sync()
    inode = os.stat(path).st_ino
    folder.store_flags({2: frozenset({"\\Seen", "\\Flagged", "$Work"})})
    assert os.stat(path).st_ino != inode  # a new file renamed over, never truncated in place
    parsed = folder.sync()
    assert parsed.entries[1].flags == frozenset({"\\Seen", "\\Flagged", "$Work"})
    assert folder.expunge({1, 3, 42}) == [1, 3]
    parsed = folder.sync()
    assert [e.uid for e in parsed.entries] == [2] and parsed.last_uid == 3
    assert folder.read(2) == MSG.replace(b"Hi", b"Hi 1")
    assert folder.read(1) is None
    mbox.deliver(path, MSG, "a@x")
    assert [e.uid for e in folder.sync().entries] == [2, 4]  # UIDs never reused


def test_forged_or_unordered_x_uid_is_renumbered() -> None:
    data = (
        b"From a Thu Jan  1 00:00:00 1970\nX-IMAPbase: 7 0000000005\nX-UID: 4\n\nm1\n\n"
        b"From a Thu Jan  1 00:00:00 1970\nX-UID: 3\n\nm2\n\n"
        b"From a Thu Jan  1 00:00:00 1970\nX-UID: 5\n\nm3\n\n"
    )
    parsed = mbox.parse(data)
    assert (parsed.uidvalidity, parsed.last_uid) == (7, 5)
    assert [e.uid for e in parsed.entries] == [4, None, None]
    assert mbox.message_bytes(data, parsed.entries[1]) == b"\nm2\n"


def test_torn_append_keeps_earlier_messages(tmp_path: Path) -> None:
    path = tmp_path / "INBOX"
    bodies = [MSG.replace(b"Hi", b"Hi %d" % n) for n in range(3)]
    for body in bodies:
        mbox.deliver(path, body, "a@x")
    whole = path.read_bytes()
    last_start = whole.rindex(b"\n\nFrom ") + 2
    for cut in range(last_start, len(whole) + 1):
        torn = whole[:cut]
        parsed = mbox.parse(torn)
        assert len(parsed.entries) >= 2
        assert [mbox.message_bytes(torn, e) for e in parsed.entries[:2]] == bodies[:2]
        # The next delivery after the crash is a message of its own, earlier ones intact.
        path.write_bytes(torn)
        mbox.deliver(path, b"Subject: after\n\nnew\n", "a@x")
        data = path.read_bytes()
        entries = mbox.parse(data).entries
        assert mbox.message_bytes(data, entries[-1]) == b"Subject: after\n\nnew\n"
        assert [mbox.message_bytes(data, e) for e in entries[:2]] == bodies[:2]


def test_not_an_mbox_is_refused(tmp_path: Path) -> None:
    with pytest.raises(mbox.MboxFormatError):
        mbox.parse(b"garbage\n")


def _s_nail(tmp_path: Path, path: Path, commands: bytes) -> str:
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "LC_ALL": "C"}
    result = subprocess.run(
        ["s-nail", "-N", "-R", "-S", "v15-compat", "-f", str(path)],
        input=commands,
        capture_output=True,
        env=env,
        timeout=30,
        check=True,
    )
    return result.stdout.decode("utf-8", "replace")


@pytest.mark.skipif(shutil.which("s-nail") is None, reason="s-nail not installed (apt s-nail)")
def test_s_nail_reads_the_mbox(tmp_path: Path) -> None:
    path = tmp_path / "INBOX"
    mbox.deliver(path, b"Subject: hello\n\nHi\n", "alice@example.test")
    mbox.deliver(path, b"Subject: second\n\nFrom the start\n", "bob@example.test")
    out = _s_nail(tmp_path, path, b"headers\nprint 2\nquit\n")
    lines = out.splitlines()
    assert any(" 1 alice@example.test " in line and "hello" in line for line in lines), out
    assert any(" 2 bob@example.test " in line and "second" in line for line in lines), out
    assert "From the start" in out  # s-nail reads mboxo-style: it shows the line as >From
    # After a rewrite with our metadata, s-nail still sees two messages and our \Seen flag.
    folder = MboxFolder(path)
    folder.sync()
    folder.store_flags({1: frozenset({"\\Seen"})})
    lines = _s_nail(tmp_path, path, b"headers\nquit\n").splitlines()
    first = next(line for line in lines if " 1 alice@example.test " in line)
    second = next(line for line in lines if " 2 bob@example.test " in line)
    # Unread: "N" while no IMAP session has claimed it (Status without O), "U" after.
    assert first.lstrip(" >")[0] not in "NU" and second.lstrip(" >")[0] in "NU"


def test_failed_append_is_truncated_back(tmp_path: Path) -> None:
    """A write that fails mid-message (EFBIG from RLIMIT_FSIZE) leaves the old file exactly."""
    path = tmp_path / "INBOX"
    mbox.deliver(path, MSG, "a@x")
    before = path.read_bytes()
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from tinymail.store import mbox\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"limit = {len(before) + 100}\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    mbox.deliver(Path({str(path)!r}), b'Subject: big\\n\\n' + b'x' * 100000, 'a@x')\n"
        "except OSError as exc:\n"
        "    print('failed', exc.errno)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=30,
        check=True,
        cwd=Path(__file__).resolve().parents[2],  # the repo root, so tinymail imports
    )
    assert result.stdout.startswith(b"failed")
    assert path.read_bytes() == before
    assert not (tmp_path / "INBOX.lock").exists()


fragments = st.sampled_from(
    [b"Status: RO\n", b"X-UID: 3\n", b"x-keywords: a\n\tb\n", b"Subject: s\n", b"\n", b"text\n",
     b">From q\n", b">>From q\n", b"From x\n", b"Content-Length: 9\n", b" cont\n", b"x"]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(fragments, max_size=12).map(b"".join), min_size=1, max_size=4))
def test_parsed_size_matches_the_served_message(messages: list[bytes]) -> None:
    """Entry.size (computed without building the message) is the served CRLF size."""
    data = b"".join(mbox.from_line("a@x", 0) + m + b"\n\n" for m in messages)
    for entry in mbox.parse(data).entries:
        served = mbox.message_bytes(data, entry)
        assert entry.size == len(served) + served.count(b"\n")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(fragments, max_size=12).map(b"".join), min_size=1, max_size=4),
    st.lists(
        st.tuples(
            st.booleans(),
            st.sets(st.sampled_from(["\\Seen", "\\Flagged", "\\Draft", "\\Recent", "$Work"])),
            st.booleans(),
        ),
        min_size=4,
        max_size=4,
    ),
)
def test_render_builds_the_parse_of_what_it_writes(
    messages: list[bytes], metas: list[tuple[bool, set[str], bool]]
) -> None:
    """A rewrite keeps the parse it built while rendering instead of reading the file back:
    that parse must be exactly what parsing the new file gives."""
    data = b"".join(mbox.from_line("a@x", 0) + m + b"\n\n" for m in messages)
    parsed = mbox.parse(data)
    wanted = [
        (uid, frozenset(flags), recent) if keep else None
        for uid, (keep, flags, recent) in enumerate(metas[: len(parsed.entries)], 10)
    ]
    wanted += [None] * (len(parsed.entries) - len(wanted))
    new, built = render(data, parsed, wanted, 7, 99, ["$Work"])
    assert built == mbox.parse(new)
    for entry, meta in zip(built.entries, [m for m in wanted if m], strict=True):
        assert entry.uid == meta[0] and entry.recent == meta[2]


@settings(max_examples=300, deadline=None)
@given(st.lists(fragments, max_size=14).map(b"".join))
def test_fast_line_start_rewrites_match_the_reference(data: bytes) -> None:
    """quote/unquote/strip find line starts from the LF before them; the result is the same as
    with a MULTILINE "^" regex (the plain definition)."""
    quote = re.compile(rb"^(>*From )", re.MULTILINE)
    unquote = re.compile(rb"^>(>*From )", re.MULTILINE)
    meta = re.compile(
        rb"^(status|x-status|x-uid|x-imapbase|x-imap|x-keywords|content-length)[ \t]*:"
        rb"([^\n]*)(?:\n[ \t][^\n]*)*(?:\n|\Z)",
        re.IGNORECASE | re.MULTILINE,
    )
    assert mbox.quote_from(data) == quote.sub(rb">\1", data)
    assert mbox.unquote_from(data) == unquote.sub(rb"\1", data)
    assert mbox.strip_metadata(data) == meta.sub(b"", data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(fragments, max_size=8).map(b"".join), min_size=1, max_size=3), st.data())
def test_render_repairs_a_torn_last_message(messages: list[bytes], draw: st.DataObject) -> None:
    """A file cut anywhere by a crash is rewritten with every kept message's UID believable."""
    data = b"".join(mbox.from_line("a@x", 0) + m + b"\n\n" for m in messages)
    data = data[: draw.draw(st.integers(5, len(data)))]
    parsed = mbox.parse(data)
    metas = [(uid, frozenset({"\\Seen"}), False) for uid in range(1, len(parsed.entries) + 1)]
    new, built = render(data, parsed, metas, 7, 99)
    assert built == mbox.parse(new)
    assert [e.uid for e in built.entries] == [m[0] for m in metas]
