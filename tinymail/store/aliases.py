"""The aliases file, in /etc/aliases syntax.

Rules (aliases(5) of sendmail and Postfix):
- `name: target, target, ...`; a line starting with white space continues the
  previous entry; `#` starts a comment line. Names are case-insensitive.
- A name is a bare local part (valid in every local domain) or a full address.
- A target is a local name, a local or remote address. Pipes (`|cmd`), files
  (`/path`) and `:include:` are refused: tinymail never runs commands or writes
  arbitrary files on behalf of mail.
- Expansion is recursive; an alias that lists itself delivers to its own
  mailbox there (`alice: alice, bob`); any other cycle is an error, reported by
  `newaliases` and never looped on at delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_DEPTH = 20


class AliasesError(Exception):
    """The aliases file has errors; `problems` holds one line per error."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Aliases:
    table: dict[str, tuple[str, ...]]
    local_domains: frozenset[str] = frozenset()

    @classmethod
    def load(cls, path: Path, local_domains: frozenset[str] = frozenset()) -> Aliases:
        """Read and validate; a missing file means no aliases. Raises AliasesError."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls({}, local_domains)
        except (OSError, UnicodeDecodeError) as exc:
            raise AliasesError([f"{path}: cannot read: {exc}"]) from None
        return cls.parse(text, str(path), local_domains)

    @classmethod
    def parse(
        cls, text: str, source: str = "aliases", local_domains: frozenset[str] = frozenset()
    ) -> Aliases:
        """Parse aliases text, collecting every error with its line number."""
        problems: list[str] = []
        entries: list[tuple[int, str]] = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t":
                if not entries:
                    problems.append(f"{source}, line {number}: continuation line without an alias")
                    continue
                start, body = entries[-1]
                entries[-1] = (start, body + " " + line.strip())
            else:
                entries.append((number, line.strip()))
        table: dict[str, tuple[str, ...]] = {}
        lines: dict[str, int] = {}
        for number, entry in entries:
            name, sep, rest = entry.partition(":")
            name = name.strip().lower()
            where = f"{source}, line {number}"
            if not sep or not name or any(c.isspace() for c in name):
                problems.append(f"{where}: expected 'name: target, ...'")
                continue
            targets = tuple(t.strip() for t in rest.split(",") if t.strip())
            if not targets:
                problems.append(f"{where}: alias {name!r} has no targets")
                continue
            for target in targets:
                why = _bad_target(target)
                if why:
                    problems.append(f"{where}: alias {name!r}: {why}")
            if name in table:
                problems.append(f"{where}: alias {name!r} already defined on line {lines[name]}")
            table[name] = tuple(t.lower() for t in targets)
            lines[name] = number
        aliases = cls(table, local_domains)
        for name in table:
            try:
                aliases.expand(name)
            except AliasesError as exc:
                problems.extend(f"{source}, line {lines[name]}: {p}" for p in exc.problems)
        if problems:
            raise AliasesError(problems)
        return aliases

    def lookup(self, address: str) -> tuple[str, ...] | None:
        """Direct targets of `address` (full-address entry first, then its local part)."""
        addr = address.lower()
        if addr in self.table:
            return self.table[addr]
        bare = self._bare(addr)
        return self.table.get(bare) if bare is not None else None

    def _bare(self, address: str) -> str | None:
        """The local name of a bare or local-domain address; None for a remote one."""
        local, at, domain = address.rpartition("@")
        if not at:
            return address
        return local if domain in self.local_domains else None

    def _same(self, a: str, b: str) -> bool:
        if a == b:
            return True
        bare_a, bare_b = self._bare(a), self._bare(b)
        return bare_a is not None and bare_a == bare_b

    def expand(self, address: str) -> tuple[str, ...]:
        """Final targets of `address` (itself when no alias); AliasesError on a loop."""
        result: list[str] = []
        self._expand(address.lower(), (), result)
        return tuple(dict.fromkeys(result))

    def _expand(self, address: str, chain: tuple[str, ...], out: list[str]) -> None:
        targets = self.lookup(address)
        if targets is None:
            out.append(address)
            return
        if len(chain) >= MAX_DEPTH:
            raise AliasesError([f"alias {address!r} nests deeper than {MAX_DEPTH}"])
        for target in targets:
            if self._same(target, address):
                out.append(target)  # self-reference: deliver to the name's own mailbox
            elif any(self._same(target, seen) for seen in chain):
                path = " -> ".join((*chain, address, target))
                raise AliasesError([f"alias loop: {path}"])
            else:
                self._expand(target, (*chain, address), out)


def _bad_target(target: str) -> str | None:
    if target.startswith("|"):
        return f"pipe targets are not supported ({target!r})"
    if target.startswith("/") or target.startswith(":include:"):
        return f"file and :include: targets are not supported ({target!r})"
    if any(ord(c) < 33 or c in '<>"\\' for c in target) or target.count("@") > 1:
        return f"bad address {target!r}"
    if target.startswith("@") or target.endswith("@"):
        return f"bad address {target!r}"
    return None
