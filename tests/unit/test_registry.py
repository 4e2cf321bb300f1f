"""The registry: lazy entries, readable unknown-name errors that survive pickling."""

import pickle

import pytest

from ausweep.registry import Registry, UnknownNameError


def test_lazy_entry_and_unknown_name():
    reg = Registry("thing")
    reg.register("json-dumps", "json:dumps", help="lazy")
    assert reg.get("json-dumps")({"a": 1}) == '{"a": 1}'
    with pytest.raises(UnknownNameError) as e:
        reg.get("json-dump")
    assert str(e.value) == "unknown thing 'json-dump'; did you mean json-dumps? (known: json-dumps)"
    again = pickle.loads(pickle.dumps(e.value))
    assert str(again) == str(e.value) and again.name == "json-dump"
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("json-dumps", "json:loads")
