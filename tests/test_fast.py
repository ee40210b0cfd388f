"""Every fast drop-in has tests that hold it equal to its textbook rule (tests/test_fast_*.py's COVERS)."""
import importlib

import minigrad as mg

FAMILY_TESTS = ["test_fast_conv_pool", "test_fast_norm_loss_adam", "test_fast_basic"]


def test_every_drop_in_is_covered_by_an_equality_test():
    covered = set()
    for name in FAMILY_TESTS:
        covered |= set(importlib.import_module(name).COVERS)
    missing = [getattr(rule, "__qualname__", rule) for rule in mg.config.drop_ins if rule not in covered]
    assert not missing, f"drop-ins without a test against their textbook rule: {missing}"
    assert covered <= set(mg.config.drop_ins), "a COVERS names a rule that has no drop-in"
