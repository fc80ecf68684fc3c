"""Started as root: bind first, then become [server] user for good (as Postfix and Dovecot do).

Rules:
- Root is needed only to bind ports below 1024 and to read root-only certificates; both happen
  before this runs. Then the process sets its groups, gid and uid to the configured account,
  and checks that it cannot get root back.
- Started as root without `[server] user`, a server that listens beyond loopback refuses to
  run, unless `allow_root = true` says that is intended (a container with no other account,
  say). A loopback-only server (the embedded default, a cron/app mail box, tests) runs with a
  warning: SPEC promises `tinymail serve` works with no config at all, and nothing remote can
  reach it.
- data_dir is handed over like `postfix set-permissions` does: every entry owned by root (made
  by `tinymail user add` or `sendmail` run as root, or by this start) is chown'ed to the account;
  entries owned by someone else are left alone, and symlinks are never followed. A data_dir
  that is `/` or directly under it is refused, so a typo cannot hand over the system.
- Not started as root: nothing to drop; a configured user is only checked to exist.
"""

from __future__ import annotations

import grp
import ipaddress
import logging
import os
import pwd
from dataclasses import fields
from pathlib import Path

from tinymail.config import Config, ConfigError, parse_listen

log = logging.getLogger("tinymail.server")


class PrivilegeError(ConfigError):
    """The privilege setup cannot be done as configured (one line for the user)."""


def drop_privileges(cfg: Config) -> None:
    """Become [server] user when running as root; raise PrivilegeError when that is impossible."""
    server = cfg.server
    if os.geteuid() != 0:
        if server.user:
            _account(server.user, server.group)  # a typo is reported even when not root
        return
    if not server.user:
        check_root_policy(cfg)
        log.warning("running as root with no [server] user")
        return
    uid, gid = _account(server.user, server.group)
    if uid == 0 and not server.allow_root:
        raise PrivilegeError(f"[server] user {server.user!r} is root; use an unprivileged account")
    hand_over(cfg.data_dir, uid, gid)
    os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    if uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:  # the kernel let us back: the drop did not stick
            raise PrivilegeError("could not drop root privileges")
    log.info("running as user=%s uid=%d gid=%d", server.user, uid, gid)


def check_root_policy(cfg: Config) -> None:
    """Refuse early (before binding) a root start that would stay root on the network."""
    if os.geteuid() != 0 or cfg.server.user or cfg.server.allow_root or loopback_only(cfg):
        return
    raise PrivilegeError(
        'refusing to run as root on non-loopback listeners: set [server] user = "tinymail" '
        "(an unprivileged account) or allow_root = true"
    )


def loopback_only(cfg: Config) -> bool:
    """True when every configured listener is on a loopback address."""
    addresses = [a for name in fields(cfg.listen) for a in getattr(cfg.listen, name.name)]
    return all(ipaddress.ip_address(parse_listen(a)[0]).is_loopback for a in addresses)


def _account(user: str, group: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"[server] user {user!r} does not exist") from None
    if not group:
        return entry.pw_uid, entry.pw_gid
    try:
        return entry.pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise PrivilegeError(f"[server] group {group!r} does not exist") from None


def hand_over(data_dir: Path, uid: int, gid: int) -> int:
    """Chown root-owned entries under data_dir (itself included) to uid:gid; returns the count."""
    root = data_dir.resolve()
    if len(root.parts) < 3:
        raise PrivilegeError(f"data_dir {root} is too close to / to hand over to another user")
    changed = 0
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in (".", *dirs, *files):
            path = os.path.join(top, name) if name != "." else top
            try:
                st = os.lstat(path)
                if st.st_uid == 0 and (st.st_uid, st.st_gid) != (uid, gid):
                    os.lchown(path, uid, gid)
                    changed += 1
            except FileNotFoundError:
                continue  # removed meanwhile (a delivery finishing): nothing to hand over
    if changed:
        log.info("data_dir %s: handed %d entries over to uid=%d gid=%d", root, changed, uid, gid)
    return changed
