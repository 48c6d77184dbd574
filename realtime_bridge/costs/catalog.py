"""Loading the pricing catalog: the shipped TOML files, then the user's own on top.

The shipped files (``realtime_bridge/costs/pricing/*.toml``) hold what the
sources say, each figure dated and sourced. A team's own file overrides or
extends them: a negotiated price, a plan the team cannot use removed, the
self-hosted infrastructure cost no source can know. Its figures carry their
own ``as_of`` and ``source`` (set once at the top of the file, or per figure),
so the report can always say where a number came from.

A figure is written as a number, as ``"unknown"``, or as a table
``{ value = ..., as_of = ..., source = ..., uncertain = ..., note = ... }``;
``as_of`` and ``source`` default to those of the nearest enclosing table
(the plan, the vendor, the file).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigurationError
from .models import VendorPricing

__all__ = ["VENDOR_ORDER", "Catalog", "load_catalog"]

#: The order vendors appear in reports: the library's adapters, then the others.
VENDOR_ORDER = ("pusher", "ably", "supabase", "redis", "liveblocks")

_INHERITED = ("as_of", "source")
_FIGURE_KEYS = {"value", "as_of", "source", "uncertain", "note"}
Raw = dict[str, Any]


@dataclass(frozen=True)
class Catalog:
    """The pricing of each vendor, in report order."""

    vendors: Mapping[str, VendorPricing]

    def __getitem__(self, vendor: str) -> VendorPricing:
        return self.vendors[vendor]

    def __iter__(self) -> Iterator[VendorPricing]:
        return iter(self.vendors.values())

    def __len__(self) -> int:
        return len(self.vendors)

    def only(self, names: Iterable[str]) -> Catalog:
        """The same catalog restricted to ``names``; an unknown name is an error."""
        wanted = list(dict.fromkeys(names))
        unknown = [name for name in wanted if name not in self.vendors]
        if unknown:
            raise ConfigurationError(
                f"unknown vendor(s) {', '.join(map(repr, unknown))}; the catalog has "
                + ", ".join(self.vendors)
            )
        return Catalog({name: self.vendors[name] for name in self.vendors if name in wanted})


def load_catalog(
    pricing: str | Path | None = None, *, vendors: Iterable[str] | None = None
) -> Catalog:
    """The shipped catalog, with the TOML file ``pricing`` (if given) applied on top."""
    raw = {name: _resolve_vendor(text, {}, name) for name, text in _shipped()}
    if pricing is not None:
        _apply_overrides(raw, Path(pricing))
    where = f"pricing file {str(pricing)!r}" if pricing is not None else "shipped pricing"
    ordered = sorted(raw, key=lambda v: (VENDOR_ORDER.index(v) if v in VENDOR_ORDER else 99, v))
    catalog = Catalog({name: _validate(raw[name], name, where) for name in ordered})
    return catalog if vendors is None else catalog.only(vendors)


def _shipped() -> Iterator[tuple[str, Raw]]:
    folder = resources.files(__package__).joinpath("pricing")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            yield entry.name.removesuffix(".toml"), tomllib.loads(entry.read_text("utf-8"))


# -- resolving figures: inherit as_of and source ----------------------------------------


def _defaults(table: Raw, outer: Raw) -> Raw:
    """The ``as_of``/``source`` a table's figures inherit; ``"unknown"`` dates become None."""
    found = dict(outer)
    for key in _INHERITED:
        if key in table:
            found[key] = table.pop(key)
    if found.get("as_of") == "unknown":
        found["as_of"] = None
    return found  # a key set nowhere stays absent: validation then names it as required


def _figure(raw: object, defaults: Raw, where: str) -> Raw:
    if isinstance(raw, bool):
        raise ConfigurationError(f"{where}: must be a number, got {raw!r}")
    if isinstance(raw, int | float):
        return {**defaults, "value": raw}
    if raw == "unknown":
        return {**defaults, "value": None}
    if isinstance(raw, dict):
        figure = {**defaults, **raw}
        if figure.get("value") == "unknown":
            figure["value"] = None
        if figure.get("as_of") == "unknown":
            figure["as_of"] = None
        return figure
    raise ConfigurationError(
        f'{where}: must be a number, "unknown" or a table {{ value = ..., as_of = ..., '
        f"source = ... }}, got {raw!r}"
    )


def _figures(table: object, defaults: Raw, where: str) -> Raw:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where}: must be a table of unit = figure, got {table!r}")
    return {unit: _figure(raw, defaults, f"{where}.{unit}") for unit, raw in table.items()}


def _rates(table: object, defaults: Raw, where: str) -> Raw:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where}: must be a table of unit = rate, got {table!r}")
    rates = {}
    for unit, raw in table.items():
        if not isinstance(raw, dict) or "price" not in raw:
            raise ConfigurationError(
                f"{where}.{unit}: must be a table {{ price = ..., per = ..., package = ... }}, "
                f"got {raw!r}"
            )
        rate = dict(raw)
        inner = _defaults(rate, defaults)
        rate["price"] = _figure(rate["price"], inner, f"{where}.{unit}.price")
        rates[unit] = rate
    return rates


def _resolve_plan(raw: object, outer: Raw, where: str) -> Raw:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: must be a table, got {raw!r}")
    plan = dict(raw)
    defaults = _defaults(plan, outer)
    if "price" in plan:
        plan["price"] = _figure(plan["price"], defaults, f"{where}.price")
    for key in ("included", "limits"):
        if key in plan:
            plan[key] = _figures(plan[key], defaults, f"{where}.{key}")
    if "overage" in plan:
        plan["overage"] = _rates(plan["overage"], defaults, f"{where}.overage")
    return plan


def _resolve_vendor(raw: Raw, outer: Raw, name: str) -> Raw:
    vendor = dict(raw)
    vendor.setdefault("vendor", name)
    defaults = _defaults(vendor, outer)
    if "limits" in vendor:
        vendor["limits"] = _figures(vendor["limits"], defaults, f"{name}.limits")
    plans = vendor.get("plans", [])
    if not isinstance(plans, list):
        raise ConfigurationError(f"{name}.plans: must be an array of tables ([[{name}.plans]])")
    vendor["plans"] = [
        _resolve_plan(plan, defaults, f"{name}.plans[{index}]") for index, plan in enumerate(plans)
    ]
    return vendor


# -- the user's file: override and extend ------------------------------------------------


def _read_toml(path: Path) -> Raw:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"pricing file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read pricing file {str(path)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"pricing file {str(path)!r} is not valid TOML: {exc}") from None


def _apply_overrides(catalog: dict[str, Raw], path: Path) -> None:
    raw = _read_toml(path)
    top = _defaults(raw, {})
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigurationError(
                f"pricing file {str(path)!r}: top-level key {name!r} must be a vendor table "
                f"([{name}]); only as_of and source may sit at the top"
            )
        try:
            resolved = _resolve_vendor(table, top, name)
        except ConfigurationError as exc:
            raise ConfigurationError(f"pricing file {str(path)!r}: {exc}") from None
        if name in catalog:
            catalog[name] = _merge_vendor(catalog[name], resolved)
        else:
            catalog[name] = resolved


def _merge_vendor(base: Raw, override: Raw) -> Raw:
    merged = {**base, **{k: v for k, v in override.items() if k not in {"plans", "limits"}}}
    merged["notes"] = [*base.get("notes", []), *override.get("notes", [])]
    merged["limits"] = {**base.get("limits", {}), **override.get("limits", {})}
    plans = {plan["name"]: plan for plan in base["plans"]}
    for plan in override["plans"]:
        name = plan.get("name")
        if plan.get("remove") is True:
            plans.pop(name, None)
        elif name in plans:
            plans[name] = _merge_plan(plans[name], plan)
        else:
            plans[name] = plan
    merged["plans"] = list(plans.values())
    return merged


def _merge_plan(base: Raw, override: Raw) -> Raw:
    merged = {**base, **{k: v for k, v in override.items() if not isinstance(v, dict)}}
    if "price" in override:
        merged["price"] = override["price"]
    for key in ("included", "limits", "overage"):
        if key in override:
            merged[key] = {**base.get(key, {}), **override[key]}
    return merged


# -- validation with readable errors -------------------------------------------------------


def _validate(raw: Raw, name: str, where: str) -> VendorPricing:
    try:
        return VendorPricing.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            path = _path(raw, name, error["loc"])
            value = error.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r:.60})"
            problems.append(f"{path}: {error['msg']}{shown}")
        raise ConfigurationError(f"{where}: " + "; ".join(problems)) from None


def _path(raw: Raw, vendor: str, loc: tuple[int | str, ...]) -> str:
    """``pusher.plans[2] (Pro).price.value`` from pydantic's location tuple."""
    parts = [vendor]
    for position, part in enumerate(loc):
        if isinstance(part, int):
            label = f"[{part}]"
            if loc[position - 1] == "plans" and part < len(raw.get("plans", [])):
                label += f" ({raw['plans'][part].get('name', '?')})"
            parts[-1] += label
        else:
            parts.append(str(part))
    return ".".join(parts)
