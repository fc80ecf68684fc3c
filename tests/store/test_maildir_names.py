from hypothesis import given
from hypothesis import strategies as st

from tinymail.store import maildir_names as mn

_names = st.text(alphabet="0123456789.MPQ,:=x\n٣", min_size=1, max_size=24)
# What delivery agents write: ten digits of seconds (a few, so they repeat), then anything,
# often M and microseconds with or without leading zeros.
_regular_names = st.builds(
    "{}.{}".format,
    st.integers(1_700_000_000, 1_700_000_003).map(str),
    st.from_regex(r"\A(M0{0,3}[0-9]{1,6})?[PQ0-9x.٣]{0,6}\Z"),
)


def test_sort_order_of_new_files() -> None:
    bases = [
        "1700000001.M9P1.h",
        "1700000001.M10P1.h",
        "999999999.M5P1.h",
        "junk",
        "1700000001.P1.h",
    ]
    assert mn.sorted_bases(bases) == [
        "junk",
        "999999999.M5P1.h",
        "1700000001.P1.h",
        "1700000001.M9P1.h",
        "1700000001.M10P1.h",
    ]


@given(st.lists(_names, unique=True, max_size=30))
def test_sorted_bases_is_sort_key_order(bases: list[str]) -> None:
    # one regex pass over all names must give the order of sort_key, name by name
    assert mn.sorted_bases(bases) == sorted(bases, key=mn.sort_key)


@given(st.lists(_regular_names, unique=True, max_size=30), st.lists(_names, max_size=2))
def test_sorted_bases_of_regular_names_is_sort_key_order(
    regular: list[str], others: list[str]
) -> None:
    # regular names take the string-sort path; any other name among them, the general one
    for bases in (regular, list(dict.fromkeys(regular + others))):
        assert mn.sorted_bases(bases) == sorted(bases, key=mn.sort_key)


@given(_names)
def test_info_letters_match_split_info(name: str) -> None:
    assert mn.info_letters(name.partition(":")[2]) == mn.split_info(name)[1]
