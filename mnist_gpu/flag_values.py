"""The values a number flag accepts, defined once: the command line parses with them and the checkpoint schema
checks a saved flag against them (a checkpoint can hold no value that the command line would refuse).
"""
import argparse
import collections
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


MAX_MEMBERS = 65536  # values a list flag may hold: a population's members are the grid of its lists


class NumberList:
    """A list flag's type: values of `item` (a NumberRange) separated by commas, integers also as ranges A-B
    (`--seed 1-16,20`). Parses to a tuple, in the order given; a value given twice is refused."""

    def __init__(self, item):
        self.item = item
        self.expected = f"{item.expected}, or several separated by commas" + \
            (" (A-B: every integer from A to B)" if item.kind is int else "")

    def __call__(self, text):
        values = []
        for part in text.split(","):
            first, dash, last = part.strip().partition("-") if self.item.kind is int else (part.strip(), "", "")
            if dash and first:
                low, high = self.item(first), self.item(last)
                if high < low or high - low >= MAX_MEMBERS:
                    raise argparse.ArgumentTypeError(f"expected a range A-B with A <= B, at most {MAX_MEMBERS} "
                                                     f"values, got {part.strip()!r}")
                values += range(low, high + 1)
            else:
                values.append(self.item(part.strip()))
            if len(values) > MAX_MEMBERS:
                raise argparse.ArgumentTypeError(f"more than {MAX_MEMBERS} values in {text[:40]!r}")
        repeated = sorted(value for value, count in collections.Counter(values).items() if count > 1)
        if repeated:
            raise argparse.ArgumentTypeError(f"{repeated[0]} is given more than once in {text[:40]!r}")
        return tuple(values)


seed_list = NumberList(non_negative_int)


class Range:
    """A range a sweep searches: LOW:HIGH, or LOW:HIGH:log for a log-uniform draw (integers or numbers)."""

    def __init__(self, low, high, log, kind):
        self.low, self.high, self.log, self.kind = low, high, log, kind

    def __eq__(self, other):
        return isinstance(other, Range) and (self.low, self.high, self.log, self.kind) == \
            (other.low, other.high, other.log, other.kind)

    def __hash__(self):
        return hash((self.low, self.high, self.log, self.kind))

    def __repr__(self):
        return f"{self.low!r}:{self.high!r}{':log' if self.log else ''}"

    def describe(self):
        """The range as JSON data (a study records its search space)."""
        return {"low": self.low, "high": self.high, "log": self.log, "type": self.kind.__name__}


class SearchValues:
    """A searchable flag's type (`mnist-gpu sweep`): a value or values separated by commas (grid points, parsed by
    NumberList: a tuple), or a range LOW:HIGH[:log] that a search draws from (a Range)."""

    def __init__(self, item):
        self.item, self.list = item, NumberList(item)
        self.expected = f"{self.list.expected}; or a range LOW:HIGH or LOW:HIGH:log"

    def __call__(self, text):
        if ":" not in text:
            return self.list(text)
        parts = [part.strip() for part in text.split(":")]
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise argparse.ArgumentTypeError(f"expected a range LOW:HIGH or LOW:HIGH:log, got {text!r}")
        try:
            low, high = self.item(parts[0]), self.item(parts[1])
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected a range LOW:HIGH or LOW:HIGH:log, each {self.item.expected}, "
                                             f"got {text!r}") from None
        if not low < high:
            raise argparse.ArgumentTypeError(f"the range {text!r} is empty: LOW must be below HIGH")
        return Range(low, high, len(parts) == 3, self.item.kind)


searchable_int = SearchValues(positive_int)
searchable_learning_rate = SearchValues(positive_float)
