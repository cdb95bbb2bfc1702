"""Writes ``sdk/key-vectors.json``: (key -> encoded key) pairs from this SDK that the JavaScript SDK must match.

    python sdk/python/tests/make_key_vectors.py > sdk/key-vectors.json

Keys are written typed, so every language reads them the same way:
``{"str": "a"}``, ``{"int": "-12"}`` (decimal text: beyond 2**53 too),
``{"bytes": "00ff"}`` (hex), ``{"tuple": [...]}``. ``invalid`` lists texts
that no key encodes to (decoding them is an ``invalid-key`` error in both).
``test_keys.py`` checks that the committed file is this script's output;
``sdk/js/test/keys.test.mjs`` checks the JavaScript encoding against it.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

from airssys_storage_sdk.keys import MAX_INT_DIGITS, encode_key

INVALID = ["", "x", "'a", ">0", ">1A", "<y", "#A ", "'!z ", "(", "= ", ">0- ", "#-1 ", "'a b ", ">1a ", "('a "]


def typed(key: Any) -> dict[str, Any]:
    """*key* as typed JSON."""
    if isinstance(key, str):
        return {"str": key}
    if isinstance(key, int):
        return {"int": str(key)}
    if isinstance(key, bytes):
        return {"bytes": key.hex()}
    return {"tuple": [typed(element) for element in key]}


def keys() -> list[Any]:
    """Edge cases of every element type, then random keys (a fixed seed: the file never changes by itself)."""
    limit = 64**MAX_INT_DIGITS - 1
    fixed: list[Any] = [
        "", "a", "ab", "b", " ", "!", "~", "\x00", "\x1f", "\x7f", "\x9f", "\xa0", "é", "€", "\uffff", "😀",
        "a b", "a!b", "a~b", "tab\there", "line\nbreak", "'quoted'", "#(<=>)",
        0, 1, -1, 2, 63, 64, -63, -64, -65, 4095, 4096, 2**31, -(2**31), 2**53 - 1, 2**53, -(2**53), 2**64, -(2**64),
        limit, -limit,
        b"", b"\x00", b"\xff", b"\x00\x00", b"\xff\xff", b"abc", b"abcd", bytes(range(16)),
        (), ("a",), ("a", 1), ("a", -1), (b"x", "y", 3), (("a", 1), b""), ((), ()), (1, (2, (3,))),
    ]  # fmt: skip
    rng = random.Random(13)
    alphabet = "ab \x00!~\x7f\x9f\xa0é€😀'#("
    for _ in range(60):
        kind = rng.randrange(4)
        if kind == 0:
            fixed.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(6))))
        elif kind == 1:
            fixed.append(rng.choice([-1, 1]) * rng.randrange(2 ** rng.choice([6, 20, 53, 80, 300])))
        elif kind == 2:
            fixed.append(bytes(rng.randrange(256) for _ in range(rng.randrange(7))))
        else:
            fixed.append((rng.randrange(-1000, 1000), "".join(rng.choice(alphabet) for _ in range(3))))
    return fixed


def vectors() -> dict[str, Any]:
    """The file's content."""
    return {
        "about": "airssys-storage collection key encoding: written by sdk/python/tests/make_key_vectors.py",
        "vectors": [{"key": typed(key), "encoded": encode_key(key)} for key in keys()],
        "invalid": INVALID,
    }


def render() -> str:
    """The file's text: JSON, one vector a line (readable diffs)."""
    content = vectors()

    def line(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)

    rows = ",\n".join(f"  {line(vector)}" for vector in content["vectors"])
    about, invalid = line(content["about"]), line(content["invalid"])
    return f'{{\n "about": {about},\n "vectors": [\n{rows}\n ],\n "invalid": {invalid}\n}}\n'


if __name__ == "__main__":
    sys.stdout.write(render())
