"""The values a number flag accepts, defined once: the command line parses with them and the checkpoint schema
checks a saved flag against them (a checkpoint can hold no value that the command line would refuse).
"""
import argparse
import math


class NumberRange:
    """A number flag's type: `range(text)` parses a command-line value, `range.holds(value)` checks a parsed one."""

    def __init__(self, kind, accept, expected):
        self.kind, self.accept, self.expected = kind, accept, expected

    def __call__(self, text):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.expected}, got {text!r}") from None
        if not self.accept(value):
            raise argparse.ArgumentTypeError(f"expected {self.expected}, got {text!r}")
        return value

    def holds(self, value):
        """Whether `value` (from JSON, say) is of this kind and in range; True and 1.0 are not integers here."""
        return type(value) is self.kind and self.accept(value)


positive_int = NumberRange(int, lambda value: value > 0, "a positive integer")
non_negative_int = NumberRange(int, lambda value: value >= 0, "an integer >= 0")
positive_float = NumberRange(float, lambda value: math.isfinite(value) and value > 0, "a finite number > 0")
