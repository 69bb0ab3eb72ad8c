"""Every error the collection and the monitor define has one root, HaecsError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import haecs_monitor
import pytest

from ansible_collections.haecs.lvs.plugins import module_utils
from ansible_collections.haecs.lvs.plugins.module_utils.ipvs.errors import HaecsError


def _error_classes() -> list[type]:
    found = []
    for package in (module_utils, haecs_monitor):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for _name, value in inspect.getmembers(module, inspect.isclass):
                if value.__module__ == info.name and issubclass(value, BaseException):
                    found.append(value)
    return found


def test_every_error_derives_from_the_one_root() -> None:
    pytest.importorskip("ansible", reason="the modules' glue imports ansible-core")
    classes = _error_classes()
    assert len(classes) >= 20  # the walk did find the errors
    strays = [
        cls.__module__ + "." + cls.__qualname__
        for cls in classes
        if not issubclass(cls, HaecsError)
    ]
    assert strays == []


def test_a_result_carries_the_fields_that_are_known() -> None:
    error = HaecsError("the kernel refused")
    error.refused = "-a -t 10.0.0.1:80 -r 10.1.1.2:80 -m -w 1"
    error.rolled_back = False
    assert error.result() == {
        "msg": "the kernel refused",
        "refused": "-a -t 10.0.0.1:80 -r 10.1.1.2:80 -m -w 1",
        "rolled_back": False,
    }
