"""The IMAP command handlers and the table of states each is valid in (RFC 3501 6).

Each handler queues its untagged responses and its tagged completion on the
connection, or returns an event for the adapter (LOGIN, AUTHENTICATE,
STARTTLS) whose answer completes the command later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tinymail.proto.imap import args, fetch, listing
from tinymail.proto.imap.events import (
    AuthRequest,
    CompressRequest,
    Event,
    StartTLSRequest,
    State,
)
from tinymail.proto.imap.parse import Atom, Command, PList, Str
from tinymail.proto.imap.search import parse_search
from tinymail.proto.imap.selected import Selection
from tinymail.store.mailbox import Mailbox, MailboxError

if TYPE_CHECKING:
    from tinymail.proto.imap.server import ServerConnection

Handler = Callable[["ServerConnection", Command], Event | None]

ANY = frozenset(State) - {State.LOGOUT}
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})


def _done(conn: ServerConnection, cmd: Command, text: str, code: str = "") -> None:
    # RFC 3501 7.4.1: no EXPUNGE while answering FETCH, STORE or SEARCH (UID forms may)
    allow = cmd.uid or cmd.name not in ("FETCH", "STORE", "SEARCH")
    conn.send_updates(allow_expunge=allow)
    conn.tagged(cmd.tag, "OK", text, code)


def capability(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 0)
    conn.send(f"* CAPABILITY {conn.capabilities()}\r\n".encode())
    _done(conn, cmd, "Capability completed")


def noop(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 0)
    _done(conn, cmd, "NOOP completed")


def logout(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 0)
    conn.bye("Logging out")
    conn.tagged(cmd.tag, "OK", "Logout completed")


def id_(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 1)  # RFC 2971 3.1: a parameter list or NIL; we only answer
    conn.send(b'* ID ("name" "tinymail")\r\n')
    _done(conn, cmd, "ID completed")


def starttls(conn: ServerConnection, cmd: Command) -> Event | None:
    args.nargs(cmd, 0)
    if conn.tls or not conn.settings.starttls_available:
        conn.tagged(cmd.tag, "BAD", "STARTTLS not available")
        return None
    conn.tagged(cmd.tag, "OK", "Begin TLS negotiation now")
    conn.reader.clear()  # RFC 3501 6.2.1 / CVE-2011-0411: drop pipelined plaintext
    conn.wait_for_adapter(cmd.tag)
    return StartTLSRequest()


def login(conn: ServerConnection, cmd: Command) -> Event | None:
    args.nargs(cmd, 2)
    if not conn.plaintext_ok:
        conn.tagged(cmd.tag, "NO", "Use STARTTLS first", "PRIVACYREQUIRED")
        return None
    user = args.astring(cmd.args[0]).decode("utf-8", "replace")
    password = args.astring(cmd.args[1]).decode("utf-8", "replace")
    conn.wait_for_adapter(cmd.tag)
    return AuthRequest(user, password, "LOGIN")


def authenticate(conn: ServerConnection, cmd: Command) -> Event | None:
    args.nargs(cmd, 1, 2)
    mech = cmd.args[0]
    if not isinstance(mech, Atom):
        raise args.Bad("Mechanism expected")
    if mech.text.upper() not in ("PLAIN", "LOGIN"):
        conn.tagged(cmd.tag, "NO", "Unsupported mechanism", "CANNOT")
        return None
    if not conn.plaintext_ok:
        conn.tagged(cmd.tag, "NO", "Use STARTTLS first", "PRIVACYREQUIRED")
        return None
    initial = None
    if len(cmd.args) == 2:  # RFC 4959 SASL-IR
        initial = args.astring(cmd.args[1])
    return conn.start_sasl(cmd.tag, mech.text, initial)


def enable(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 1, 100)
    conn.send(b"* ENABLED\r\n")  # RFC 5161 3.2: we enable none of the asked extensions
    _done(conn, cmd, "ENABLE completed")


def namespace(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 0)
    conn.send(b'* NAMESPACE (("" ".")) NIL NIL\r\n')  # RFC 2342 5
    _done(conn, cmd, "NAMESPACE completed")


def select(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 1)
    name = args.mailbox_name(cmd.args[0])
    # RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected. The old selection is
    # dropped only after the open, so re-selecting reuses the warm shared folder object.
    previous, conn.selection = conn.selection, None
    conn.state = State.AUTHENTICATED
    box = conn.require_store().open(name)
    del previous
    readonly = cmd.name == "EXAMINE"
    selection = Selection(box, readonly)
    for line in selection.open():
        conn.send(line)
    conn.selection = selection
    conn.state = State.SELECTED
    conn.tagged(cmd.tag, "OK", f"{cmd.name} completed", "READ-ONLY" if readonly else "READ-WRITE")


def create(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 1)
    conn.require_store().create(args.mailbox_name(cmd.args[0]))
    _done(conn, cmd, "CREATE completed")


def delete(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 1)
    conn.require_store().delete(args.mailbox_name(cmd.args[0]))
    _done(conn, cmd, "DELETE completed")


def rename(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 2)
    store = conn.require_store()
    store.rename(args.mailbox_name(cmd.args[0]), args.mailbox_name(cmd.args[1]))
    _done(conn, cmd, "RENAME completed")


def subscribe(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 1)
    name = args.mailbox_name(cmd.args[0])
    conn.require_store().set_subscribed(name, cmd.name == "SUBSCRIBE")
    _done(conn, cmd, f"{cmd.name} completed")


def _status_line(box: Mailbox, name: str, items: tuple[str, ...]) -> bytes:
    messages, recent, unseen = box.status_counts()
    view = box.sync(claim_recent=False)
    values = {
        "MESSAGES": messages,
        "RECENT": recent,
        "UIDNEXT": view.uidnext,
        "UIDVALIDITY": view.uidvalidity,
        "UNSEEN": unseen,
    }
    body = " ".join(f"{item} {values[item]}" for item in items)
    return b"* STATUS %s (%s)\r\n" % (listing.wire_name(name), body.encode())


def status(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 2)
    name = args.mailbox_name(cmd.args[0])
    wanted = cmd.args[1]
    if not isinstance(wanted, PList) or not wanted.items:
        raise args.Bad("STATUS items expected")
    items = tuple(t.text.upper() if isinstance(t, Atom) else "" for t in wanted.items)
    if any(i not in listing.STATUS_ITEMS for i in items):
        raise args.Bad("Unknown STATUS item")
    conn.send(_status_line(conn.require_store().open(name), name, items))
    _done(conn, cmd, "STATUS completed")


def list_(conn: ServerConnection, cmd: Command) -> None:
    request = listing.parse_list(cmd.args)
    store = conn.require_store()
    subscribed = set(store.subscriptions())
    for line, status_name in listing.list_lines(request, store.folders(), subscribed):
        conn.send(line)
        if status_name is not None:  # RFC 5819: STATUS right after its LIST line
            try:
                box = store.open(status_name)
                conn.send(_status_line(box, status_name, request.status_items))
            except MailboxError:
                continue
    _done(conn, cmd, "LIST completed")


def lsub(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 2)
    request = listing.parse_list(cmd.args)
    for line in listing.lsub_lines(request.patterns, conn.require_store().subscriptions()):
        conn.send(line)
    _done(conn, cmd, "LSUB completed")


def append(conn: ServerConnection, cmd: Command) -> None:
    name, flags, when, message = args.append_args(cmd.args)
    if not message:
        raise args.Bad("Empty message")
    try:
        box = conn.require_store().open(name)
    except MailboxError as exc:
        if exc.code == "NONEXISTENT":  # RFC 3501 6.3.11
            raise MailboxError("TRYCREATE", "Mailbox does not exist") from exc
        raise
    uid = box.append(message, flags, when)
    validity = box.sync(claim_recent=False).uidvalidity
    _done(conn, cmd, "APPEND completed", f"APPENDUID {validity} {uid}")  # RFC 4315 3


def check(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 0)
    _done(conn, cmd, "CHECK completed")


def close(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 0)
    selection = conn.require_selection()
    if cmd.name == "CLOSE" and not selection.readonly:
        # RFC 3501 6.4.2: expunge silently, no untagged EXPUNGE responses
        box = selection.mailbox
        box.expunge([u for u in selection.uids if "\\Deleted" in (box.flags(u) or ())])
    conn.selection = None
    conn.state = State.AUTHENTICATED
    conn.tagged(cmd.tag, "OK", f"{cmd.name} completed")


def expunge(conn: ServerConnection, cmd: Command) -> None:
    selection = conn.require_selection()
    only = None
    if cmd.uid:  # RFC 4315 2.1
        args.nargs(cmd, 1)
        wanted = args.seqset(cmd.args[0])
        only = {selection.uids[i] for i in selection.indices(wanted, by_uid=True)}
    else:
        args.nargs(cmd, 0)
    for line in selection.do_expunge(only):
        conn.send(line)
    _done(conn, cmd, "EXPUNGE completed")


def search(conn: ServerConnection, cmd: Command) -> None:
    selection = conn.require_selection()
    try:
        key, _charset = parse_search(cmd.args)
    except LookupError:
        conn.tagged(cmd.tag, "NO", "Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
        return
    conn.send(selection.do_search(key, cmd.uid))
    _done(conn, cmd, "SEARCH completed")


def fetch_(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 2)
    selection = conn.require_selection()
    wanted = args.seqset(cmd.args[0])
    items = fetch.parse_items(cmd.args[1])
    for line in selection.do_fetch(wanted, items, cmd.uid):
        conn.send(line)
    _done(conn, cmd, "FETCH completed")


def store(conn: ServerConnection, cmd: Command) -> None:
    if len(cmd.args) < 3:
        raise args.Bad("STORE needs a set, an item and flags")
    selection = conn.require_selection()
    wanted = args.seqset(cmd.args[0])
    mode, silent = args.store_mode(cmd.args[1])
    flags = args.flag_list(cmd.args[2:])
    for line in selection.do_store(wanted, mode, flags, silent, cmd.uid):
        conn.send(line)
    _done(conn, cmd, "STORE completed")


def _target(conn: ServerConnection, tok: Atom | Str | PList) -> Mailbox:
    try:
        return conn.require_store().open(args.mailbox_name(tok))
    except MailboxError as exc:
        if exc.code == "NONEXISTENT":  # RFC 3501 6.4.7: tell the client to CREATE
            raise MailboxError("TRYCREATE", "Mailbox does not exist") from exc
        raise


def copy(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 2)
    selection = conn.require_selection()
    wanted = args.seqset(cmd.args[0])
    code, _ = selection.do_copy(wanted, _target(conn, cmd.args[1]), cmd.uid)
    _done(conn, cmd, "COPY completed", code)  # RFC 4315 3: COPYUID


def move(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 2)
    selection = conn.require_selection()
    if selection.readonly:
        raise MailboxError("READ-ONLY", "Mailbox is read-only")
    wanted = args.seqset(cmd.args[0])
    code, moved = selection.do_copy(wanted, _target(conn, cmd.args[1]), cmd.uid)
    if code:
        conn.send(f"* OK [{code}] Moved\r\n".encode())  # RFC 6851 4.3
    for line in selection.expunge_uids(moved):
        conn.send(line)
    _done(conn, cmd, "MOVE completed")


def idle(conn: ServerConnection, cmd: Command) -> None:
    args.nargs(cmd, 0)
    conn.send_updates(allow_expunge=True)
    conn.idle_tag = cmd.tag
    conn.send(b"+ idling\r\n")  # RFC 2177 3


def compress(conn: ServerConnection, cmd: Command) -> Event | None:
    args.nargs(cmd, 1)
    mech = cmd.args[0]
    if not isinstance(mech, Atom) or mech.text.upper() != "DEFLATE":
        raise args.Bad("Only DEFLATE is supported")
    if conn.compressed:  # RFC 4978 3
        conn.tagged(cmd.tag, "NO", "DEFLATE is already active", "COMPRESSIONACTIVE")
        return None
    if not conn.settings.compress_available or conn.reader.buffered():
        # RFC 4978 3: nothing may follow COMPRESS before its OK; pipelined bytes would be
        # ambiguous, so refuse rather than guess whether they are compressed.
        conn.tagged(cmd.tag, "NO", "Cannot start compression now", "CANNOT")
        return None
    conn.tagged(cmd.tag, "OK", "DEFLATE active")
    conn.wait_for_adapter(cmd.tag)
    return CompressRequest()


HANDLERS: dict[tuple[str, bool], tuple[Handler, frozenset[State]]] = {
    ("CAPABILITY", False): (capability, ANY),
    ("NOOP", False): (noop, ANY),
    ("LOGOUT", False): (logout, ANY),
    ("ID", False): (id_, ANY),
    ("STARTTLS", False): (starttls, NOT_AUTH),
    ("LOGIN", False): (login, NOT_AUTH),
    ("AUTHENTICATE", False): (authenticate, NOT_AUTH),
    ("ENABLE", False): (enable, AUTH),
    ("NAMESPACE", False): (namespace, AUTH),
    ("SELECT", False): (select, AUTH),
    ("EXAMINE", False): (select, AUTH),
    ("CREATE", False): (create, AUTH),
    ("DELETE", False): (delete, AUTH),
    ("RENAME", False): (rename, AUTH),
    ("SUBSCRIBE", False): (subscribe, AUTH),
    ("UNSUBSCRIBE", False): (subscribe, AUTH),
    ("LIST", False): (list_, AUTH),
    ("LSUB", False): (lsub, AUTH),
    ("STATUS", False): (status, AUTH),
    ("APPEND", False): (append, AUTH),
    ("IDLE", False): (idle, AUTH),
    ("COMPRESS", False): (compress, AUTH),
    ("CHECK", False): (check, SELECTED),
    ("CLOSE", False): (close, SELECTED),
    ("UNSELECT", False): (close, SELECTED),
    ("EXPUNGE", False): (expunge, SELECTED),
    ("EXPUNGE", True): (expunge, SELECTED),
    ("SEARCH", False): (search, SELECTED),
    ("SEARCH", True): (search, SELECTED),
    ("FETCH", False): (fetch_, SELECTED),
    ("FETCH", True): (fetch_, SELECTED),
    ("STORE", False): (store, SELECTED),
    ("STORE", True): (store, SELECTED),
    ("COPY", False): (copy, SELECTED),
    ("COPY", True): (copy, SELECTED),
    ("MOVE", False): (move, SELECTED),
    ("MOVE", True): (move, SELECTED),
}
