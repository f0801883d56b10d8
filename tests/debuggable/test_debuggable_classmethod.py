"""@debuggable on class methods, above or below @classmethod."""

from __future__ import annotations

import inspect

from helpers import make_probe, mode_of

import eagerctl

probe, seen = make_probe()


class Config:
    name = "cfg"

    @eagerctl.debuggable
    @classmethod
    def above(cls, suffix: str) -> tuple[str, str]:
        return cls.name + suffix, mode_of(probe, seen)

    @classmethod
    @eagerctl.debuggable
    def below(cls, suffix: str) -> tuple[str, str]:
        return cls.name + suffix, mode_of(probe, seen)


class Child(Config):
    name = "child"


def test_debuggable_above_classmethod_binds_the_class() -> None:
    assert Config.above("!") == ("cfg!", "eager")
    assert Config().above("?") == ("cfg?", "eager")
    assert Child.above("!") == ("child!", "eager")
    assert mode_of(probe, seen) == "graph"


def test_debuggable_below_classmethod_binds_the_class() -> None:
    assert Config.below("!") == ("cfg!", "eager")
    assert Child().below("?") == ("child?", "eager")
    assert mode_of(probe, seen) == "graph"


def test_signature_and_name_of_the_bound_class_method() -> None:
    for method in (Config.above, Config.below):
        assert str(inspect.signature(method)) == "(suffix: 'str') -> 'tuple[str, str]'"
        assert method.__name__ in ("above", "below")
        assert method.__self__ is Config
