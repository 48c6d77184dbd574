"""The pricing catalog: the shipped files, a team's own file on top, and clear errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from realtime_bridge.costs import load_catalog
from realtime_bridge.errors import ConfigurationError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ours.toml"
    path.write_text(text)
    return path


def test_the_shipped_catalog_has_every_vendor_in_report_order() -> None:
    catalog = load_catalog()
    assert [v.vendor for v in catalog] == ["pusher", "ably", "supabase", "redis", "liveblocks"]
    assert catalog["pusher"].uncertain and catalog["liveblocks"].uncertain


def test_a_figure_inherits_as_of_and_source_from_the_nearest_table() -> None:
    ably = load_catalog()["ably"]
    standard = next(p for p in ably.plans if p.name == "Standard")
    assert standard.price.source == "https://ably.com/pricing"  # set on the figure
    assert standard.price.as_of == date(2025, 9, 16)  # from the file
    assert standard.limits["peak_connections"].as_of == date(2026, 5, 7)
    assert load_catalog()["supabase"].plans[0].price.as_of is None  # "unknown"


def test_a_negotiated_price_and_our_own_infrastructure_override_the_shipped_ones(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
as_of = 2026-09-01
source = "contract 2026-17 and our AWS bill"

[pusher]
[[pusher.plans]]
name = "Pro"
price = 79

[[pusher.plans]]
name = "Sandbox"
remove = true

[redis]
[[redis.plans]]
name = "self-hosted"
price = { value = 120, note = "2 small nodes and 2 gateway VMs" }
limits = { peak_connections = 20000 }
""",
    )
    catalog = load_catalog(path)
    pro = next(p for p in catalog["pusher"].plans if p.name == "Pro")
    assert pro.price.value == 79
    assert pro.price.source == "contract 2026-17 and our AWS bill"
    assert pro.price.as_of == date(2026, 9, 1)
    assert pro.limits["messages_per_day"].value == 4_000_000  # kept from the shipped file
    assert "Sandbox" not in [p.name for p in catalog["pusher"].plans]
    redis = catalog["redis"].plans[0]
    assert redis.price.value == 120 and redis.limits["peak_connections"].value == 20000


def test_a_new_vendor_may_be_added_with_a_known_counting_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[soketi]
name = "soketi on our servers"
counting = "redis"
as_of = 2026-09-01
source = "our bill"
plans = [{ name = "two VMs", price = 40 }]
""",
    )
    assert load_catalog(path, vendors=["soketi"])["soketi"].plans[0].price.value == 40


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[pusher]\n[[pusher.plans]]\nname = 'Pro'\nprice = 79\n", "source"),
        (
            "source = 'x'\nas_of = 2026-01-01\n[pusher]\n[[pusher.plans]]\nname = 'Pro'\n"
            "limits = { messages_per_dya = 5 }\n",
            "pusher.plans[2] (Pro).limits: Value error, unknown unit 'messages_per_dya'",
        ),
        (
            "source = 'x'\nas_of = 2026-01-01\n[pusher]\n[[pusher.plans]]\nname = 'Pro'\n"
            "price = 'cheap'\n",
            "pusher.plans[0].price: must be a number",
        ),
        (
            "source = 'x'\nas_of = 2026-01-01\n[pusher]\n[[pusher.plans]]\nname = 'Pro'\n"
            "price = -1\n",
            "pusher.plans[2] (Pro).price.value: Value error, must be 0 or more",
        ),
        ("[soketi]\nname = 'x'\n", "soketi.counting: Field required"),
        ("oops = 1\n", "top-level key 'oops' must be a vendor table"),
        ("[pusher\n", "is not valid TOML"),
    ],
)
def test_a_bad_pricing_file_names_the_field_and_the_rule(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        load_catalog(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_missing_file_and_an_unknown_vendor_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_catalog(tmp_path / "none.toml")
    with pytest.raises(ConfigurationError, match=r"unknown vendor.*'pubnub'"):
        load_catalog(vendors=["pusher", "pubnub"])
