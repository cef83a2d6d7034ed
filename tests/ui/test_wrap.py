"""The conversation's wrapping: the fast height count agrees with the lines actually drawn."""

from __future__ import annotations

import random
import string

from tui_chat.ui.widgets.conversation import body_height, wrap_body


def random_body(rnd: random.Random) -> str:
    words = ["".join(rnd.choices(string.ascii_letters, k=rnd.choice((1, 2, 3, 5, 8, 13, 40, 90)))) for _ in range(rnd.randint(1, 30))]
    body = "".join(word + " " * rnd.randint(1, 3) for word in words)
    if rnd.random() < 0.3:
        body = " " * rnd.randint(1, 4) + body
    return body.strip() if rnd.random() < 0.5 else body


def test_fast_height_matches_the_drawn_lines():
    rnd = random.Random(4)
    for _ in range(3000):
        body = random_body(rnd)
        for width in (8, 20, 37, 75):
            lines = wrap_body(body, width)
            assert body_height(body, width) == len(lines), (body, width)
            assert all(sum(len(text) for text, _ in line) <= width for line in lines)


def test_wide_and_control_characters_wrap_by_cells():
    lines = wrap_body("日本語のテキスト " * 4 + "\x1b[31m", 10)
    assert all(sum(2 if ord(ch) > 0x3000 else 1 for text, _ in line for ch in text) <= 10 for line in lines)
    assert ("␛", True) in [piece for line in lines for piece in line]
    assert body_height("line one\nline two", 40) == 2
