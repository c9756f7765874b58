"""S-NSSAI labels as KPM exports write them."""

from __future__ import annotations

import pytest

from sliceai.policy.snssai import canonical_snssai, parse_snssai_label


@pytest.mark.parametrize(
    ("label", "canonical"),
    [
        ("1-0000a1", "1-0000A1"),
        ("01-0000A1", "1-0000A1"),
        ("1:0000A1", "1-0000A1"),
        ("sST=1,sD=0000A1", "1-0000A1"),
        ("sst: 3; sd: 00000c", "3-00000C"),
        ('{"sST": 2, "sD": "0000A2"}', "2-0000A2"),
        ("0x02-0000b1", "2-0000B1"),
        ("1-FFFFFF", "1"),  # TS 23.003: SD FFFFFF is "no SD"
        (" 5 ", "5"),
    ],
)
def test_labels_read(label: str, canonical: str) -> None:
    assert parse_snssai_label(label) == canonical


@pytest.mark.parametrize(
    ("label", "says"),
    [
        ("consults", "write SST-SD"),
        ("1-00A1", "write SST-SD"),
        ("300", "SST 300 is outside 0..255"),
        ("sst=1,sd=zz", "SD 'ZZ' is not 6 hex digits"),
    ],
)
def test_bad_labels_are_refused_with_a_sentence(label: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_snssai_label(label)


def test_canonical() -> None:
    assert canonical_snssai(1, "") == "1"
    assert canonical_snssai("7", "abcdef") == "7-ABCDEF"
