"""LIST / LSUB with LIST-EXTENDED, SPECIAL-USE, CHILDREN and LIST-STATUS (RFC 3501 6.3.8-9,
RFC 5258, RFC 6154, RFC 3348, RFC 5819).

Rules: `*` matches anything, `%` anything but the hierarchy separator `.`;
reference and pattern are joined as RFC 3501 6.3.8 says. Every LIST line
carries \\HasChildren or \\HasNoChildren and the folder's special-use
attribute; \\Subscribed with the SUBSCRIBED option. A non-existent parent of
a folder is listed as \\NonExistent (LIST-EXTENDED) / \\Noselect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tinymail.proto.imap import utf7
from tinymail.proto.imap.parse import Atom, PList, Str, Token
from tinymail.proto.imap.quoting import quoted_or_literal
from tinymail.store.mailbox import SEPARATOR, FolderInfo

STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN")
_SELECTION = frozenset(("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"))
_RETURNS = frozenset(("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"))


class ListSyntaxError(ValueError):
    """Malformed LIST arguments (tagged BAD)."""


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A parsed LIST command."""

    patterns: tuple[str, ...]  # Unicode, reference already joined
    subscribed_only: bool
    special_use_only: bool
    return_subscribed: bool
    return_special_use: bool
    status_items: tuple[str, ...]
    extended: bool
    recursive_match: bool = False


def _text(tok: Token) -> str:
    if isinstance(tok, Atom):
        raw = tok.text
    elif isinstance(tok, Str) and tok.data.isascii():
        raw = tok.data.decode("ascii")
    else:
        raise ListSyntaxError("string expected")
    try:
        return utf7.decode(raw)
    except utf7.Utf7Error as exc:
        raise ListSyntaxError(str(exc)) from exc


def _options(tok: Token) -> list[str]:
    if not isinstance(tok, PList) or not all(isinstance(t, Atom) for t in tok.items):
        raise ListSyntaxError("option list expected")
    return [t.text.upper() for t in tok.items if isinstance(t, Atom)]


def parse_list(args: tuple[Token, ...]) -> ListRequest:
    """LIST [(selection)] reference pattern(s) [RETURN (options)]."""
    selection: list[str] = []
    if args and isinstance(args[0], PList):
        selection = _options(args[0])
        args = args[1:]
        if any(o not in _SELECTION for o in selection):
            raise ListSyntaxError("unknown LIST selection option")  # RFC 5258 3
        if "RECURSIVEMATCH" in selection and not set(selection) & {"SUBSCRIBED", "SPECIAL-USE"}:
            raise ListSyntaxError("RECURSIVEMATCH needs another selection option")
    if len(args) < 2:
        raise ListSyntaxError("LIST needs a reference and a pattern")
    reference = _text(args[0])
    if isinstance(args[1], PList):
        raw_patterns = [_text(t) for t in args[1].items]
    else:
        raw_patterns = [_text(args[1])]
    rest = args[2:]
    returns: list[str] = []
    status: tuple[str, ...] = ()
    if rest:
        if len(rest) != 2 or not isinstance(rest[0], Atom) or rest[0].text.upper() != "RETURN":
            raise ListSyntaxError("RETURN expected")
        opts = rest[1]
        if not isinstance(opts, PList):
            raise ListSyntaxError("RETURN options expected")
        items = list(opts.items)
        i = 0
        while i < len(items):
            item = items[i]
            if not isinstance(item, Atom):
                raise ListSyntaxError("RETURN option expected")
            name = item.text.upper()
            if name == "STATUS":
                if i + 1 >= len(items):
                    raise ListSyntaxError("STATUS items expected")
                status = tuple(_options(items[i + 1]))
                if not status or any(s not in STATUS_ITEMS for s in status):
                    raise ListSyntaxError("unknown STATUS item")
                i += 1
            if name not in _RETURNS:
                raise ListSyntaxError("unknown LIST return option")
            returns.append(name)
            i += 1
    patterns = tuple(reference + p if not p.startswith(SEPARATOR) or not reference else
                     reference.rstrip(SEPARATOR) + p for p in raw_patterns)  # fmt: skip
    return ListRequest(
        patterns=patterns,
        subscribed_only="SUBSCRIBED" in selection,
        special_use_only="SPECIAL-USE" in selection,
        return_subscribed="SUBSCRIBED" in returns or "SUBSCRIBED" in selection,
        return_special_use=True,
        status_items=status,
        extended=bool(selection or returns or len(raw_patterns) > 1),
        recursive_match="RECURSIVEMATCH" in selection,
    )


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A regex for an IMAP LIST pattern (INBOX matched case-insensitively)."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(r"[^.]*")
        else:
            out.append(re.escape(ch))
    body = "".join(out)
    if pattern[:5].upper() == "INBOX":
        body = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(body + r"\Z", re.S)


def wire_name(name: str) -> bytes:
    """A mailbox name as sent: modified UTF-7, quoted (or a literal)."""
    return quoted_or_literal(utf7.encode(name).encode("ascii"))


def _selected(request: ListRequest, info: FolderInfo, subscribed: set[str]) -> bool:
    if request.subscribed_only and info.name not in subscribed:
        return False
    return not (request.special_use_only and info.special_use is None)


def list_lines(
    request: ListRequest, folders: list[FolderInfo], subscribed: set[str]
) -> list[tuple[bytes, str | None]]:
    """(LIST line, folder name for a STATUS line or None) for every matching folder."""
    regexes = [pattern_regex(p) for p in request.patterns]
    if request.patterns == ("",):
        return [(b'* LIST (\\Noselect) "." ""\r\n', None)]
    infos = {f.name: f for f in folders}
    if request.subscribed_only:
        # RFC 5258 3: subscribed names are listed even when the mailbox does not exist
        for name in subscribed:
            infos.setdefault(name, FolderInfo(name, False, None))
    names = sorted(infos, key=lambda n: (n != "INBOX", n))
    out = []
    for name in names:
        info = infos[name]
        if not any(r.match(name) for r in regexes):
            continue
        prefix = name + SEPARATOR
        childinfo = b""
        if not _selected(request, info, subscribed):
            # RFC 5258 3.5: RECURSIVEMATCH lists a parent of a selected mailbox with CHILDINFO
            if not request.recursive_match or not any(
                n.startswith(prefix) and _selected(request, infos[n], subscribed) for n in names
            ):
                continue
            kind = "SUBSCRIBED" if request.subscribed_only else "SPECIAL-USE"
            childinfo = b' ("CHILDINFO" ("%s"))' % kind.encode()
        attrs = []
        if not info.selectable:
            attrs.append("\\NonExistent" if request.extended else "\\Noselect")
        has_children = any(n.startswith(prefix) for n in infos if infos[n].selectable)
        attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
        if request.return_subscribed and name in subscribed:
            attrs.append("\\Subscribed")
        if info.special_use and request.return_special_use:
            attrs.append(info.special_use)
        line = b'* LIST (%s) "." %s%s\r\n' % (" ".join(attrs).encode(), wire_name(name), childinfo)
        out.append((line, name if info.selectable and request.status_items else None))
    return out


def lsub_lines(patterns: tuple[str, ...], subscribed: list[str]) -> list[bytes]:
    """LSUB responses (RFC 3501 6.3.9) for subscribed names matching the pattern."""
    regexes = [pattern_regex(p) for p in patterns]
    return [
        b'* LSUB () "." %s\r\n' % wire_name(name)
        for name in subscribed
        if any(r.match(name) for r in regexes)
    ]
