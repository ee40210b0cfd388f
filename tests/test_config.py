"""config: every setting read once from the environment, changeable in code; the drop-in table."""
import os
import subprocess
import sys

import pytest

import minigrad as mg


def _settings(**env):
    code = "import minigrad as mg; c = mg.config; print(c.fast, c.threads, c.winograd, c.allow_tf32)"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MINIGRAD_")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60)


def test_defaults_and_the_environment():
    assert _settings().stdout.split() == ["True", "0", "True", "False"]
    out = _settings(MINIGRAD_FAST="off", MINIGRAD_NUM_THREADS="3", MINIGRAD_WINOGRAD="0")
    assert out.stdout.split() == ["False", "3", "False", "False"]


def test_a_thread_count_that_is_no_number_is_an_error_naming_the_variable():
    out = _settings(MINIGRAD_NUM_THREADS="many")
    assert out.returncode != 0
    assert "$MINIGRAD_NUM_THREADS must be a whole number of threads (0: every core), got 'many'" in out.stderr


def test_textbook_turns_the_drop_ins_off_for_a_block_and_restores_the_setting(monkeypatch):
    monkeypatch.setattr(mg.config, "fast", True)
    rule = next(iter(mg.config.drop_ins))
    assert mg.config.chosen(rule) is mg.config.drop_ins[rule] is not rule
    with mg.config.textbook():
        assert mg.config.fast is False and mg.config.chosen(rule) is rule
    assert mg.config.fast is True and mg.config.chosen(rule) is mg.config.drop_ins[rule]


def test_a_rule_without_a_drop_in_is_itself():
    def rule():
        pass
    assert mg.config.chosen(rule) is rule


def test_every_drop_in_is_a_subclass_of_its_rule_with_its_name():
    """A drop-in replaces its textbook node inside the graph: same name in messages, textbook backward inherited."""
    assert mg.config.drop_ins, "minigrad.fast registered no drop-ins"
    for rule, fast in mg.config.drop_ins.items():
        if isinstance(rule, type):
            assert issubclass(fast, rule) and fast.__name__ == rule.__name__, (rule, fast)
            assert fast.backward is rule.backward, f"{fast} must keep its rule's textbook backward"
        else:
            assert callable(fast), (rule, fast)
