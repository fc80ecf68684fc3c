"""POP3 workload P1 or IMAP workload I1 on an mbox (or Maildir) store: tinymail next to Dovecot.

P1 and I1 are the shared harness's mailbox workloads (/work/shared/bench, README "Workloads"),
timed per step, first on a freshly started server ("cold": no server index, no UIDs in the
mbox) and then again right after ("warm"):
  P1  one POP3 session: USER/PASS, STAT, UIDL, 200 random RETR, QUIT
  I1  one IMAP session: LOGIN, SELECT, FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE
      BODYSTRUCTURE), UID SEARCH TEXT, 200 UID FETCH BODY.PEEK[], STORE 1000 +FLAGS, LOGOUT
The shared harness runs them on Maildir only; this script runs the same steps with the shared
harness's own client code (tmbench.imapclient) on ONE mbox file holding the same 10,000 corpus
messages, given to both servers:

  dovecot    a private Dovecot started as tmbench.targets starts it (passwd-file users,
             {PLAIN} passwords, own base_dir/state_dir, inside the loopback-only namespace),
             with ``mail_location = mbox:~/mail:INBOX=~/mail/inbox``; imap on :30703, pop3
             on :30710
  tinymail   ``tinymail -c CONF serve`` with ``[store] format = "mbox"`` and the mbox as
             data_dir/mail/user01@bench.test/INBOX; imap on :30743, pop3 on :30720 (smtp
             :30725)

The mbox is built once from the shared harness's 10,000-message corpus Maildir (same seed, same
order as Dovecot's Maildir UIDs): mboxrd ``From `` quoting, a ``From bench@bench.test <date>``
separator, no Status/X-UID headers (a /var/mail file as an MTA leaves it). Both servers get a
byte-identical copy. Checks: UIDL lists every message on both, and the UIDs (first 8 hex
digits of each UIDL) are the same on both (Dovecot-compatible UIDs); P1 prints the bytes the
RETRs returned (on mbox they differ by design: Dovecot does not undo mboxrd quoting); I1
checks that SELECT and FETCH 1:* see every message and that SEARCH finds every needle.

Prints one table: median [min-max] over --reps, and x = median of tinymail / dovecot within the
same rep. ``--store maildir`` runs the same on the corpus Maildir (as the harness has it).
Password checks differ: Dovecot's users are {PLAIN}, tinymail's are scrypt (~50 ms per cold
login; later logins hit its cache). ``--plain-users`` gives tinymail the same {PLAIN} users file
lines as Dovecot (tinymail reads Dovecot's passwd-file schemes), so the login step compares the
servers rather than the hash schemes.

Run as root, timed runs under the shared lock:
  TINYMAIL_CMD="/tmp/tmbench/cache/venv/bin/python -m tinymail" flock -x /tmp/bench.lock \\
      python3 bench/store_sessions.py [--workload P1|I1] [--store mbox|maildir] [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("TMBENCH_DIR", "/work/shared/bench"))
sys.path.insert(0, str(SHARED))

from tmbench import corpus, imapclient  # noqa: E402
from tmbench.targets import (  # noqa: E402
    HOST,
    MAIL_UID,
    USERS,
    Dovecot,
    Tinymail,
    chown_tree,
    password,
)

STEPS = {
    "P1": ("login", "stat", "uidl", "retr_200"),
    "I1": ("login", "select", "fetch_all", "search_text", "fetch_body_200", "store_1000", "logout"),
}
_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)
_MBOX_LOCATION = "mail_location = mbox:~/mail:INBOX=~/mail/inbox"


class Ctx:
    """What tmbench targets need from the harness context."""

    def __init__(self, workroot: Path) -> None:
        self.workroot = workroot


def corpus_maildir(cache: Path, count: int, seed: int) -> tuple[Path, dict]:
    """The shared harness's corpus Maildir (built as run.py builds it when missing)."""
    path = cache / f"maildir-{count}-s{seed}"
    index = cache / (path.name + ".index.json")
    if not index.exists():
        print(f"# building Maildir {path}", flush=True)
        shutil.rmtree(path, ignore_errors=True)
        corpus.build_maildir(path, count, seed, uid=MAIL_UID, gid=MAIL_UID)
    return path, json.loads(index.read_text())


def corpus_mbox(cache: Path, maildir: Path, info: dict) -> Path:
    """One mboxrd file with the corpus messages in Maildir UID order (built once, cached)."""
    out = cache / f"{maildir.name}.mbox"
    if out.exists():
        return out
    print(f"# building mbox {out}", flush=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for meta in sorted(info["messages"], key=lambda m: m["file"].split("/")[-1]):
            data = (maildir / meta["file"]).read_bytes().replace(b"\r\n", b"\n")
            if not data.endswith(b"\n"):
                data += b"\n"
            date = time.asctime(time.gmtime(meta["date"]))
            f.write(b"From bench@bench.test " + date.encode() + b"\n")
            f.write(_QUOTE.sub(rb">\1", data) + b"\n")
    tmp.rename(out)
    return out


class DovecotStore(Dovecot):
    name = "dovecot"
    imap_port = 30703
    pop3_port = 30710

    def __init__(self, work: Path, ctx: Ctx, store: str, source: Path) -> None:
        super().__init__(work, ctx)
        self.store, self.source = store, source

    def prepare(self, users, mailboxes=None):
        super().prepare(users, {users[0]: self.source} if self.store == "maildir" else None)
        if self.store == "mbox":
            conf = self.dconf.read_text()
            assert "mail_location = maildir:~/Maildir" in conf
            self.dconf.write_text(conf.replace("mail_location = maildir:~/Maildir", _MBOX_LOCATION))
            home = self.dconf.parent / "home" / users[0].split("@")[0]
            (home / "mail").mkdir(parents=True)
            shutil.copyfile(self.source, home / "mail" / "inbox")
            chown_tree(home)


class TinymailStore(Tinymail):
    name = "tinymail"
    smtp_port = 30725
    submission_port = 30787
    imap_port = 30743
    pop3_port = 30720

    def __init__(
        self, work: Path, ctx: Ctx, store: str, source: Path, plain_users: bool = False
    ) -> None:
        super().__init__(work, ctx)
        self.store, self.source, self.plain_users = store, source, plain_users

    def config_toml(self, *args, **kwargs) -> str:  # type: ignore[override]
        text = Tinymail.config_toml(*args, **kwargs)
        return text.replace('format = "maildir"', f'format = "{self.store}"')

    def prepare(self, users, mailboxes=None):
        super().prepare(users, {users[0]: self.source} if self.store == "maildir" else None)
        if self.store == "mbox":
            home = self.data / "mail" / users[0]
            home.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.source, home / "INBOX")
        if self.plain_users:  # Dovecot's own scheme for these users (see the docstring)
            users_file = self.data / "users"
            users_file.write_text("".join(f"{u}:{{PLAIN}}{password(u)}\n" for u in users))
            users_file.chmod(0o600)


def uidl_uids(host: str, port: int, user: str) -> list[str]:
    """The UID part (first 8 hex digits) of every UIDL line, in message order."""
    import socket

    with socket.create_connection((host, port), timeout=300) as s:
        f = s.makefile("rb")
        f.readline()
        for cmd in (f"USER {user}", f"PASS {password(user)}", "UIDL"):
            s.sendall(cmd.encode() + b"\r\n")
            if not f.readline().startswith(b"+OK"):
                raise RuntimeError(f"{cmd.split()[0]} refused")
        out = []
        while (line := f.readline()) != b".\r\n":
            out.append(line.split()[1][:8].decode())
        s.sendall(b"QUIT\r\n")
        f.readline()
    return out


def run_target(t, seed: int, workload: str) -> dict:
    user = USERS[0]
    t.prepare(USERS[:2])
    t.start()
    try:
        rng = random.Random(seed)
        if workload == "P1":
            cold = imapclient.pop3_session(HOST, t.pop3_port, user, password(user), 200, rng)
            warm = imapclient.pop3_session(HOST, t.pop3_port, user, password(user), 200, rng)
        else:
            args = (HOST, t.imap_port, user, password(user), corpus.NEEDLE, rng)
            cold = imapclient.i1_session(*args, "1:1000")
            warm = imapclient.i1_session(*args, "1001:2000")
        uids = uidl_uids(HOST, t.pop3_port, user)
    finally:
        t.stop()
    out: dict = {
        f"{name}.{s}_ms": r[s] * 1e3
        for name, r in (("cold", cold), ("warm", warm))
        for s in STEPS[workload]
    }
    if workload == "P1":
        out["retr_bytes"] = cold["retr_bytes"] + warm["retr_bytes"]
    else:
        out["seen"] = (cold["exists"], cold["fetch_all.responses"])
        out["search_hits"] = (cold["search_hits"], warm["search_hits"])
        out["body_size_mismatch"] = cold["fetch_body_size_mismatch"]
        out["body_size_mismatch"] += warm["fetch_body_size_mismatch"]
    out["uids"] = uids
    return out


def fmt(values: list[float]) -> str:
    med = statistics.median(values)
    text = f"{med:.3g}" if med < 100 else f"{med:.0f}"
    return text if len(values) == 1 else f"{text} [{min(values):.3g}-{max(values):.3g}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=["P1", "I1"], default="P1")
    ap.add_argument("--store", choices=["mbox", "maildir"], default="mbox")
    ap.add_argument("--targets", default="dovecot,tinymail")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1, help="as run.py --seed (corpus seed + 1)")
    ap.add_argument("--cache", default="/tmp/tmbench/cache")
    ap.add_argument("--keep", action="store_true", help="keep the work dirs (configs, logs)")
    ap.add_argument("--out", help="write the raw figures here (JSON)")
    ap.add_argument(
        "--plain-users", action="store_true", help="tinymail's users as Dovecot's: {PLAIN}"
    )
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (daemons, chown, private mount namespace)", file=sys.stderr)
        return 2
    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    maildir, info = corpus_maildir(cache, a.count, a.seed + 1)
    source = corpus_mbox(cache, maildir, info) if a.store == "mbox" else maildir
    names = a.targets.split(",")
    classes = {"dovecot": DovecotStore, "tinymail": TinymailStore}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workroot = Path(f"/tmp/tmbench/runs/{a.workload}-{a.store}-{stamp}")
    workroot.mkdir(parents=True)
    ctx = Ctx(workroot)
    results: dict[str, list[dict]] = {n: [] for n in names}
    for rep in range(a.reps):
        for name in names:
            if name == "tinymail":
                t = TinymailStore(workroot / f"{name}-{rep}", ctx, a.store, source, a.plain_users)
            else:
                t = classes[name](workroot / f"{name}-{rep}", ctx, a.store, source)
            if why := t.unavailable():
                print(f"# skip {name}: {why}")
                continue
            r = run_target(t, a.seed + 1 + rep, a.workload)
            results[name].append(r)
            steps = " ".join(
                f"{k.split('_ms')[0]}={v:.1f}" for k, v in r.items() if k.endswith("_ms")
            )
            print(f"# rep {rep + 1} {name}: {steps}", flush=True)
    ran = [n for n in names if results[n]]
    print(f"\n### {a.workload} on {a.store} ({a.count} messages, {a.reps} rep(s))\n")
    print("| metric | " + " | ".join(ran) + " |")
    print("|---" * (len(ran) + 1) + "|")
    base = ran[0]
    for key in [f"{p}.{s}_ms" for p in ("cold", "warm") for s in STEPS[a.workload]]:
        cells = []
        for n in ran:
            cell = fmt([r[key] for r in results[n]])
            if n != base and len(results[n]) == len(results[base]):
                ratios = [r[key] / b[key] for r, b in zip(results[n], results[base], strict=True)]
                cell += f" x{statistics.median(ratios):.2f}"
            cells.append(cell)
        print(f"| {key.removesuffix('_ms').replace('.', ' ')} ms | " + " | ".join(cells) + " |")
    ok = True
    for n in ran:
        full = all(len(r["uids"]) == a.count for r in results[n])
        ok &= full
        print(f"\n{n}: UIDL lists all {a.count} messages: {'yes' if full else 'NO'}", end="")
        if a.workload == "I1":
            seen = all(r["seen"] == (a.count, a.count) for r in results[n])
            hits = all(r["search_hits"] == (info["needles"],) * 2 for r in results[n])
            bodies = all(r["body_size_mismatch"] == 0 for r in results[n])
            ok &= seen and hits and bodies
            checks = f"SELECT/FETCH see all: {seen}, SEARCH finds all: {hits}"
            print(f"; {checks}, BODY sizes match: {bodies}", end="")
    if len(ran) == 2:
        pairs = list(zip(*(results[n] for n in ran), strict=True))
        same_uids = all(x["uids"] == y["uids"] for x, y in pairs)
        ok &= same_uids
        print(f"\nsame UIDs on both (UIDL): {'yes' if same_uids else 'NO'}")
        for n in ran if a.workload == "P1" else ():
            print(f"{n}: RETR bytes {[r['retr_bytes'] for r in results[n]]}")
        if a.store == "mbox" and a.workload == "P1":
            print(
                "(on mbox Dovecot sends mboxrd-quoted '>From ' lines as stored, tinymail unquotes)"
            )
    print(f"x = median over reps of ({ran[-1]} / {base}) within the same rep.")
    if a.out:
        for rs in results.values():
            for r in rs:
                r.pop("uids", None)
        Path(a.out).write_text(json.dumps({"store": a.store, "results": results}, indent=1))
    if not a.keep:
        shutil.rmtree(workroot, ignore_errors=True)
    else:
        print(f"work dirs kept in {workroot}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
