"""A regular expression for "base58 of a 32-byte key", for the OpenAPI document.

The server decodes an address and checks its length; a schema can only state a pattern. A
pattern of 32-44 base58 characters lets through strings that decode to 23 or 33 bytes, which
the server refuses with 400 and schemathesis then reports as valid input rejected. So this
module writes the exact language as a regex: a key whose first byte is not zero is the
base58 numeral of an integer in [2**248, 2**256), i.e. 43 characters at or above the numeral
of 2**248 or 44 characters at or below that of 2**256 - 1. Keys with a zero first byte
(1 in 256) carry leading '1's and are not described (the server still accepts them).
"""

from __future__ import annotations

from typing import Final

ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_ANY: Final = "[1-9A-HJ-NP-Za-km-z]"


def _class(low: int, high: int) -> str:
    """The base58 digits ``low..high`` as a character class of ASCII runs."""
    chars = ALPHABET[low : high + 1]
    runs: list[str] = []
    start = 0
    while start < len(chars):
        end = start
        while end + 1 < len(chars) and ord(chars[end + 1]) == ord(chars[end]) + 1:
            end += 1
        run = chars[start : end + 1]
        runs.append(run if len(run) <= 2 else f"{run[0]}-{run[-1]}")
        start = end + 1
    return "[" + "".join(runs) + "]"


def _tail(count: int) -> str:
    return "" if count == 0 else _ANY if count == 1 else f"{_ANY}{{{count}}}"


def _either(options: list[str]) -> str:
    return options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"


def _at_least(digits: list[int]) -> str:
    """Numerals of ``len(digits)`` characters that are >= ``digits`` (nested: O(n) long)."""
    if not digits:
        return ""
    first, rest = digits[0], len(digits) - 1
    options = [_class(first + 1, 57) + _tail(rest)] if first < 57 else []
    return _either([*options, ALPHABET[first] + _at_least(digits[1:])])


def _at_most(digits: list[int], lowest: int = 0) -> str:
    """Numerals of ``len(digits)`` characters, first digit >= ``lowest``, that are <= ``digits``."""
    if not digits:
        return ""
    first, rest = digits[0], len(digits) - 1
    options = [_class(lowest, first - 1) + _tail(rest)] if first > lowest else []
    return _either([*options, ALPHABET[first] + _at_most(digits[1:])])


def key_address_pattern(key_bytes: int = 32) -> str:
    """The regex (no anchors) of base58 addresses of ``key_bytes``-byte keys, first byte > 0."""
    low, high = _digits(2 ** (8 * key_bytes - 8)), _digits(2 ** (8 * key_bytes) - 1)
    if len(high) != len(low) + 1:
        raise ValueError("the key's numerals must span two lengths")
    # the longer numerals must not start with '1' (that would be a zero byte): from digit 1
    return _either([_at_least(low), _at_most(high, 1)])


def _digits(value: int) -> list[int]:
    out: list[int] = []
    while value:
        value, digit = divmod(value, 58)
        out.append(digit)
    return out[::-1]
