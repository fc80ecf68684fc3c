"""Maildir file names: flags in the `:2,` info, sizes in `,S=`/`,W=`, keywords file.

Rules (research/imap-anchors.md 3.3; cr.yp.to/proto/maildir.html): flags are
letters after `:2,` in ASCII order: D draft, F flagged, P passed, R replied
(\\Answered), S seen, T trashed (\\Deleted); `a`..`z` are keywords numbered by
the folder's `dovecot-keywords` file (`<n> <name>` lines). Letters we do not
map (P, anything else) are kept when flags are rewritten, as Dovecot does.
Text after a `,` that follows the flags is left alone too.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import compress, count
from pathlib import Path

from tinymail.store.safeio import atomic_replace

KEYWORDS_FILE = "dovecot-keywords"
MAX_KEYWORDS = 26
SYSTEM_LETTERS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
LETTER_OF = {flag.lower(): letter for letter, flag in SYSTEM_LETTERS.items()}
_SIZE_RE = re.compile(r",([SW])=(\d+)")
_SORT_RE = re.compile(r"\A(\d+)\.(?:[^.]*?M(\d+))?")
# _SORT_RE for each line of many names joined by newlines: exactly one match per line.
_SORT_LINES_RE = re.compile(r"^(?:(\d+)\.(?:[^.\n]*?M(\d+))?)?", re.M)
# A line of joined names that does not start with ten ASCII digits and a dot.
_IRREGULAR_LINE_RE = re.compile(r"^(?![0-9]{10}\.)", re.M)


def split_info(filename: str) -> tuple[str, str, str]:
    """(base, flag letters, rest after the flags) of a file name."""
    base, sep, info = filename.partition(":")
    if not sep or not info.startswith("2,"):
        return base, "", info if sep else ""
    letters, comma, rest = info[2:].partition(",")
    return base, letters, comma + rest


@lru_cache(maxsize=1024)
def info_letters(info: str) -> str:
    """The flag letters of the info part of a file name (all after the first `:`), as
    split_info finds them; remembered, as a folder's files share few distinct infos."""
    if not info.startswith("2,"):
        return ""
    return info[2:].partition(",")[0]


@lru_cache(maxsize=4096)
def letters_to_flags(letters: str, keywords: tuple[str, ...]) -> frozenset[str]:
    """IMAP flags for flag letters, given the folder's keyword list (cached: few combos)."""
    out = set()
    for ch in letters:
        if ch in SYSTEM_LETTERS:
            out.add(SYSTEM_LETTERS[ch])
        elif "a" <= ch <= "z":
            index = ord(ch) - ord("a")
            if index < len(keywords):
                out.add(keywords[index])
    return frozenset(out)


def flags_to_letters(flags: frozenset[str], keywords: tuple[str, ...], keep_from: str) -> str:
    """Letters for `flags`, keeping unmapped letters of the old name `keep_from`."""
    out = {ch for ch in keep_from if ch not in SYSTEM_LETTERS and not "a" <= ch <= "z"}
    lowered = {kw.lower(): i for i, kw in enumerate(keywords)}
    for flag in flags:
        letter = LETTER_OF.get(flag.lower())
        if letter is not None:
            out.add(letter)
        elif flag.lower() in lowered:
            out.add(chr(ord("a") + lowered[flag.lower()]))
    return "".join(sorted(out))  # maildir spec: letters in ASCII order


def with_letters(filename: str, letters: str) -> str:
    """`filename` with its flag letters replaced."""
    base, _, rest = split_info(filename)
    return f"{base}:2,{letters}{rest}"


def sizes(base: str) -> tuple[int, int]:
    """(`,S=` size, `,W=` CRLF size) from the base name, -1 where absent."""
    s = w = -1
    for key, value in _SIZE_RE.findall(base):
        if key == "S":
            s = int(value)
        else:
            w = int(value)
    return s, w


def sort_key(base: str) -> tuple[int, int, str]:
    """Order for new files: delivery second, microsecond, then name (Dovecot's order)."""
    match = _SORT_RE.match(base)
    if match is None:
        return (0, 0, base)
    return (int(match.group(1)), int(match.group(2) or 0), base)


def sorted_bases(bases: list[str]) -> list[str]:
    """`sorted(bases, key=sort_key)` without a Python call per name (a first scan of a
    folder orders every message in it): a string sort when every name is regular, else the
    fields of all names parsed by one regex pass over the joined names."""
    if not bases:
        return []
    joined = "\n".join(bases)
    if joined.count("\n") != len(bases) - 1:  # a name holds a newline: one match per name
        return sorted(bases, key=sort_key)
    if _IRREGULAR_LINE_RE.search(joined) is None:
        return _sorted_regular(bases)
    fields = _SORT_LINES_RE.findall(joined)  # exactly one match per line
    keys = [
        (int(s) if s else 0, int(u) if u else 0, b) for (s, u), b in zip(fields, bases, strict=True)
    ]
    keys.sort()
    return [key[2] for key in keys]


def _sorted_regular(bases: list[str]) -> list[str]:
    """sorted_bases for names that all start with ten digits and a dot (what maildir
    writers have made since 2001): a plain string sort puts the seconds in order; only
    runs of names that share a second need sort_key for their microseconds."""
    out = sorted(bases)
    seconds = [base[:11] for base in out]
    # positions whose name shares its second with the one before it, found by map() and
    # compress() in C; the loop below steps only through those
    shared = list(compress(count(1), map(str.__eq__, seconds[1:], seconds)))
    i = 0
    while i < len(shared):
        first = last = shared[i]
        while i + 1 < len(shared) and shared[i + 1] == last + 1:
            i += 1
            last += 1
        out[first - 1 : last + 1] = sorted(out[first - 1 : last + 1], key=sort_key)
        i += 1
    return out


def read_keywords(folder: Path) -> tuple[str, ...]:
    """The keyword list of a folder; index i is letter chr(ord('a') + i)."""
    try:
        text = (folder / KEYWORDS_FILE).read_text("utf-8", "replace")
    except FileNotFoundError:
        return ()
    slots: dict[int, str] = {}
    for line in text.splitlines():
        index, _, name = line.partition(" ")
        if index.isdigit() and name and int(index) < MAX_KEYWORDS:
            slots[int(index)] = name
    out: list[str] = []
    for i in range(MAX_KEYWORDS):
        if i not in slots:
            break
        out.append(slots[i])
    return tuple(out)


def write_keywords(folder: Path, keywords: tuple[str, ...]) -> None:
    """Replace the keywords file (call with the uidlist lock held, as Dovecot requires)."""
    text = "".join(f"{i} {kw}\n" for i, kw in enumerate(keywords))
    atomic_replace(folder / KEYWORDS_FILE, text.encode("utf-8"))
