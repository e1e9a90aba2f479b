"""One test over every backend's error table (`conveyor.errormap.ErrorMap`)."""

from __future__ import annotations

import importlib

import pytest

from conveyor import errors
from conveyor.errormap import ErrorMap
from conveyor.errors import BackendClosedError, BackendError, ConveyorError

TABLES = [
    "conveyor_redis.errors",
    "conveyor_nats.errors",
    "conveyor_kafka.errors",
    "conveyor_sqlite.errors",
]


def _table(module: str) -> ErrorMap:
    table = importlib.import_module(module).ERRORS
    assert isinstance(table, ErrorMap)
    return table


@pytest.mark.parametrize("module", TABLES)
def test_every_rule_has_an_example_that_it_maps(module: str) -> None:
    table = _table(module)
    assert table.rules
    for index, rule in enumerate(table.rules):
        assert rule.example is not None, f"{module} rule {index} has no example"
        example = rule.example()
        assert isinstance(example, table.catch), (module, index, example)
        mapped = table.translate(example, "doing it")
        assert type(mapped) is rule.error, (module, index, example, mapped)
        assert str(mapped).startswith("doing it: "), mapped
        # the first matching rule wins: an example must not be shadowed by an earlier rule
        first = next(r for r in table.rules if r.matches(example, table.code_of(example)))
        assert first is rule, (module, index)


@pytest.mark.parametrize("module", TABLES)
def test_tables_only_raise_conveyor_errors(module: str) -> None:
    tree = {getattr(errors, name) for name in errors.__all__}
    for rule in _table(module).rules:
        assert rule.error in tree
        assert issubclass(rule.error, ConveyorError)


@pytest.mark.parametrize("module", TABLES)
def test_conveyor_errors_pass_through_and_the_rest_is_a_backend_error(module: str) -> None:
    table = _table(module)
    own = errors.GroupNotFoundError("already mapped")
    assert table.translate(own, "x") is own
    with pytest.raises(errors.GroupNotFoundError), table.mapping("x"):
        raise own
    base = table.catch[0]
    try:
        unknown = base("something unforeseen")
    except TypeError:  # a base class that takes no message
        unknown = base()
    mapped = table.translate(unknown, "x")
    assert isinstance(mapped, BackendError)


@pytest.mark.parametrize("module", TABLES)
def test_a_client_error_after_close_is_a_closed_error(module: str) -> None:
    table = _table(module)
    rule = table.rules[0]
    assert rule.example is not None
    with pytest.raises(BackendClosedError), table.mapping("x", closed=lambda: True):
        raise rule.example()
    with pytest.raises(ConveyorError) as caught, table.mapping("x", closed=lambda: False):
        raise rule.example()
    assert type(caught.value) is rule.error
