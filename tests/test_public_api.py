"""The public surface: ``__all__`` is complete and tidy, and the error tree is what it says."""

from __future__ import annotations

import inspect
import re
from types import ModuleType

import pytest

import realtime_bridge
import realtime_bridge.adapters.base
import realtime_bridge.bridge
import realtime_bridge.errors
import realtime_bridge.events
from realtime_bridge import PermanentError, RealtimeBridgeError, TransientError

#: Modules whose public classes and functions are all part of the top-level API.
EXPORTING_MODULES = [
    realtime_bridge.errors,
    realtime_bridge.events,
    realtime_bridge.bridge,
    realtime_bridge.adapters.base,
]


def _defined_public(module: ModuleType) -> set[str]:
    """Public classes and functions defined (not imported) in ``module``."""
    return {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    }


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then everything else."""
    if name.isupper() and len(name) > 1:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_every_name_in_all_exists() -> None:
    missing = [name for name in realtime_bridge.__all__ if not hasattr(realtime_bridge, name)]
    assert missing == []


def test_all_has_no_duplicates_and_is_sorted() -> None:
    names = realtime_bridge.__all__
    assert len(names) == len(set(names))
    assert names == sorted(names, key=_isort_key)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from realtime_bridge import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(realtime_bridge.__all__)


@pytest.mark.parametrize("module", EXPORTING_MODULES, ids=lambda m: m.__name__)
def test_every_public_class_and_function_is_exported(module: ModuleType) -> None:
    defined = _defined_public(module)
    assert defined, f"found nothing public in {module.__name__}"
    missing = sorted(defined - set(realtime_bridge.__all__))
    assert missing == [], f"{module.__name__} defines {missing} but realtime_bridge does not export"
    for name in defined:
        assert getattr(realtime_bridge, name) is getattr(module, name)


@pytest.mark.parametrize("module", EXPORTING_MODULES, ids=lambda m: m.__name__)
def test_module_all_lists_what_the_module_defines(module: ModuleType) -> None:
    assert _defined_public(module) <= set(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)


def test_version_is_a_string() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", realtime_bridge.__version__)


# -- the error tree ---------------------------------------------------------------------


def _error_classes() -> list[type[BaseException]]:
    return [
        obj
        for obj in vars(realtime_bridge.errors).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == realtime_bridge.errors.__name__
    ]


ERRORS = _error_classes()
LEAVES = [e for e in ERRORS if e not in (RealtimeBridgeError, TransientError, PermanentError)]


def test_the_error_module_defines_the_documented_errors() -> None:
    names = {error.__name__ for error in ERRORS}
    assert names >= {
        "RealtimeBridgeError",
        "TransientError",
        "PermanentError",
        "PayloadTooLarge",
        "InvalidChannel",
        "InvalidEvent",
        "AuthenticationFailed",
        "RateLimited",
        "VendorUnavailable",
        "CapabilityNotSupported",
        "ConfigurationError",
    }


@pytest.mark.parametrize("error", LEAVES, ids=lambda e: e.__name__)
def test_every_error_is_either_transient_or_permanent(error: type[BaseException]) -> None:
    assert issubclass(error, RealtimeBridgeError)
    assert issubclass(error, TransientError) != issubclass(error, PermanentError)


def test_the_two_branches_are_disjoint_children_of_the_root() -> None:
    assert TransientError.__bases__ == (RealtimeBridgeError,)
    assert PermanentError.__bases__ == (RealtimeBridgeError,)
    assert RealtimeBridgeError.__bases__ == (Exception,)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_every_error_is_exported_and_drawn_in_the_tree(error: type[BaseException]) -> None:
    assert error.__name__ in realtime_bridge.__all__
    docstring = realtime_bridge.errors.__doc__ or ""
    assert re.search(rf"\b{error.__name__}\b", docstring), f"{error.__name__} missing from the tree"


def test_the_drawn_tree_matches_the_classes() -> None:
    """Each name in the docstring's tree sits under the parent it is drawn under."""
    docstring = realtime_bridge.errors.__doc__ or ""
    drawn: list[tuple[int, str]] = []
    for line in docstring.splitlines():
        match = re.match(r"^(\s*(?:[│├└─ ]*))(\w+)", line)
        if match and match.group(2) in {e.__name__ for e in ERRORS}:
            drawn.append((len(match.group(1)), match.group(2)))
    assert len(drawn) == len(ERRORS)
    classes = {error.__name__: error for error in ERRORS}
    stack: list[tuple[int, str]] = []
    for depth, name in drawn:
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parent = classes[stack[-1][1]]
            assert parent in classes[name].__bases__, f"{name} is drawn under {parent.__name__}"
        stack.append((depth, name))


def test_invalid_input_errors_are_value_errors_too() -> None:
    for name in ("InvalidEvent", "InvalidChannel", "PayloadTooLarge"):
        assert issubclass(getattr(realtime_bridge, name), ValueError)
