"""tinymail.store.aliases: /etc/aliases syntax, expansion, loops, refused targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinymail.store.aliases import MAX_DEPTH, Aliases, AliasesError

LOCAL = frozenset({"example.test", "localhost"})


def problems_of(text: str, local_domains: frozenset[str] = LOCAL) -> list[str]:
    with pytest.raises(AliasesError) as info:
        Aliases.parse(text, "aliases", local_domains)
    assert str(info.value) == "; ".join(info.value.problems)
    return info.value.problems


def test_parse_comments_blank_lines_and_continuations() -> None:
    text = (
        "# the admins\n"
        "\n"
        "staff: alice,\n"
        "  bob,\n"
        "\tcarol@example.test\n"
        "   # an indented comment does not end the entry\n"
        "  , dave\n"
        "Postmaster:   root\n"
    )
    aliases = Aliases.parse(text, "aliases", LOCAL)
    assert aliases.table == {
        "staff": ("alice", "bob", "carol@example.test", "dave"),
        "postmaster": ("root",),
    }


def test_names_and_targets_are_case_insensitive() -> None:
    aliases = Aliases.parse("Sales: Alice, BOB@Example.Test\n", "aliases", LOCAL)
    assert aliases.lookup("SALES") == ("alice", "bob@example.test")
    assert aliases.lookup("sales@EXAMPLE.TEST") == ("alice", "bob@example.test")
    assert aliases.expand("SaLeS") == ("alice", "bob@example.test")


def test_bare_names_apply_only_in_local_domains() -> None:
    aliases = Aliases.parse("sales: alice\n", "aliases", LOCAL)
    assert aliases.lookup("sales") == ("alice",)
    assert aliases.lookup("sales@example.test") == ("alice",)
    assert aliases.lookup("sales@localhost") == ("alice",)
    assert aliases.lookup("sales@remote.test") is None
    assert aliases.expand("sales@remote.test") == ("sales@remote.test",)
    no_domains = Aliases.parse("sales: alice\n", "aliases")
    assert no_domains.lookup("sales@example.test") is None


def test_full_address_entries_win_over_bare_names() -> None:
    text = "info: alice\ninfo@localhost: bob\n"
    aliases = Aliases.parse(text, "aliases", LOCAL)
    assert aliases.expand("info@example.test") == ("alice",)
    assert aliases.expand("info@localhost") == ("bob",)
    assert aliases.expand("info") == ("alice",)


def test_nested_expansion_and_dedup() -> None:
    text = (
        "all: staff, ops, alice\n"
        "staff: alice, bob\n"
        "ops: team@example.test\n"
        "team@example.test: carol, bob\n"
    )
    aliases = Aliases.parse(text, "aliases", LOCAL)
    assert aliases.expand("all") == ("alice", "bob", "carol")
    assert aliases.expand("nobody") == ("nobody",)


def test_diamond_is_not_a_loop() -> None:
    text = "a: b, c\nb: d\nc: d\nd: x\n"
    assert Aliases.parse(text, "aliases", LOCAL).expand("a") == ("x",)


def test_self_reference_delivers_to_own_mailbox() -> None:
    aliases = Aliases.parse("alice: alice, bob\nbob: bob@example.test, carol\n", "x", LOCAL)
    assert aliases.expand("alice") == ("alice", "bob@example.test", "carol")
    assert aliases.expand("alice@example.test") == ("alice", "bob@example.test", "carol")


def test_self_reference_through_a_local_domain_address() -> None:
    aliases = Aliases.parse("root: root@localhost, ops@remote.test\n", "x", LOCAL)
    assert aliases.expand("root") == ("root@localhost", "ops@remote.test")


def test_remote_targets_are_kept() -> None:
    aliases = Aliases.parse("fwd: someone@remote.test, alice\n", "aliases", LOCAL)
    assert aliases.expand("fwd@example.test") == ("someone@remote.test", "alice")


def test_two_alias_loop_is_reported_with_line_numbers() -> None:
    problems = problems_of("# c\na: b\nb: a\n")
    assert any(p.startswith("aliases, line 2: alias loop: a -> b -> a") for p in problems)
    assert any(p.startswith("aliases, line 3: alias loop: b -> a -> b") for p in problems)


def test_longer_loop_via_local_domain_address() -> None:
    problems = problems_of("a: b\nb: c@example.test\nc: a@localhost\n")
    assert len(problems) == 3
    assert all("alias loop" in p for p in problems)
    assert {p.split(":")[0] for p in problems} == {
        "aliases, line 1",
        "aliases, line 2",
        "aliases, line 3",
    }


def test_loop_check_at_expand_time() -> None:
    # A table built directly (not via parse) still never loops at delivery.
    aliases = Aliases({"a": ("b",), "b": ("a",)}, LOCAL)
    with pytest.raises(AliasesError, match="alias loop"):
        aliases.expand("a")


def test_depth_limit() -> None:
    chain = "".join(f"a{i}: a{i + 1}\n" for i in range(MAX_DEPTH + 2))
    problems = problems_of(chain)
    assert any("nests deeper than" in p for p in problems)
    ok = "".join(f"a{i}: a{i + 1}\n" for i in range(MAX_DEPTH - 1))
    assert Aliases.parse(ok, "aliases", LOCAL).expand("a0") == (f"a{MAX_DEPTH - 1}",)


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("|/usr/bin/procmail", "pipe targets are not supported"),
        ('"|cmd"', "bad address"),
        ("/var/mail/x", "file and :include: targets are not supported"),
        (":include:/etc/list", "file and :include: targets are not supported"),
        ("a@b@c", "bad address"),
        ("@example.test", "bad address"),
        ("alice@", "bad address"),
        ("<alice>", "bad address"),
        ("back\\slash", "bad address"),
    ],
)
def test_refused_targets(target: str, why: str) -> None:
    problems = problems_of(f"ok: alice\nx: alice, {target}\n")
    assert len(problems) == 1
    assert problems[0].startswith("aliases, line 2: alias 'x': ")
    assert why in problems[0]


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        ("  bob\n", 1, "continuation line without an alias"),
        ("ok: a\nno colon here\n", 2, "expected 'name: target, ...'"),
        ("ok: a\n: a\n", 2, "expected 'name: target, ...'"),
        ("two words: a\n", 1, "expected 'name: target, ...'"),
        ("ok: a\nempty:\n", 2, "has no targets"),
        ("ok: a\nempty: , ,\n", 2, "has no targets"),
        ("dup: a\nother: b\nDUP: c\n", 3, "already defined on line 1"),
    ],
)
def test_syntax_errors_name_the_line(text: str, line: int, why: str) -> None:
    problems = problems_of(text)
    assert any(p.startswith(f"aliases, line {line}: ") and why in p for p in problems), problems


def test_every_problem_is_collected() -> None:
    text = "a: |cmd\nb: /file\nc\nd: e\ne: d\n"
    problems = problems_of(text)
    lines = sorted({p.split(":")[0] for p in problems})
    assert lines == [f"aliases, line {n}" for n in (1, 2, 3, 4, 5)]


def test_load_missing_file_and_real_file(tmp_path: Path) -> None:
    assert Aliases.load(tmp_path / "missing", LOCAL).table == {}
    path = tmp_path / "aliases"
    path.write_text("postmaster: alice\nabuse: postmaster\n")
    aliases = Aliases.load(path, LOCAL)
    assert aliases.expand("abuse@example.test") == ("alice",)
    assert aliases.local_domains == LOCAL


def test_load_reports_the_path(tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_text("x: |cmd\n")
    with pytest.raises(AliasesError) as info:
        Aliases.load(path, LOCAL)
    assert info.value.problems[0].startswith(f"{path}, line 1: ")
    path.write_bytes(b"x: caf\xe9\n")
    with pytest.raises(AliasesError, match="cannot read"):
        Aliases.load(path, LOCAL)
