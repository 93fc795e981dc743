"""Shared pytest fixtures: where the ../shared test data lives.

A test that needs ../shared skips only when it is absent; under CI=true a missing data dir is a failure.
"""
from __future__ import annotations

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _data_dir() -> pathlib.Path:
    env = os.environ.get("CROSSICL_TEST_DATA")
    return pathlib.Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared() -> pathlib.Path:
    d = _data_dir()
    if not (d / "paper").is_dir() or not (d / "models").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"test data missing under CI=true: {d}")
        pytest.skip(f"test data not found: {d}")
    return d


@pytest.fixture(scope="session")
def paper_dir(shared: pathlib.Path) -> pathlib.Path:
    return shared / "paper"


@pytest.fixture(scope="session")
def models_dir(shared: pathlib.Path) -> pathlib.Path:
    return shared / "models"


def pytest_collection_modifyitems(items):
    """Every test that reads a model checkpoint from ../shared/models is marked `model` (`-m "not model"` leaves
    them out); `slow` is set by hand on the long ones (`-m "not slow"` is the quick subset)."""
    for item in items:
        if "models_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.model)
