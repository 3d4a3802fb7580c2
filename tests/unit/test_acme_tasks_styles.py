"""Request styles: the ways people write a task, split like phrasings, slots untouched."""

from __future__ import annotations

import random

from examples.acme.tasks.styles import STYLES, restyle, style_split


def _wrappers(split: str) -> set[str]:
    return {
        style.variants[i]
        for style in STYLES
        for i in range(len(style.variants))
        if style_split(i, len(style.variants)) == split and not style.variants[i].startswith("<")
    }


def test_no_test_wording_is_a_training_wording() -> None:
    """The wrappers test requests are written in never wrap a training request."""
    assert _wrappers("test") and not _wrappers("test") & _wrappers("train")
    assert not _wrappers("dev") & _wrappers("train")


def test_styles_change_how_ids_are_spelled_not_which() -> None:
    """Lower-case and undashed ids keep the record's letters and digits."""
    rng = random.Random(0)
    seen = {restyle("Pay INV-1008 on 2025-03-17.", "train", rng) for _ in range(300)}
    assert "Pay INV-1008 on 2025-03-17." in seen  # some requests stay plain
    assert any("inv-1008" in s for s in seen) and any("INV1008" in s for s in seen)
    assert all("1008" in s for s in seen)
    assert all("2025-03-17" in s for s in seen)


def test_restyle_is_deterministic_per_generator() -> None:
    """The same seed writes the same request."""
    text = "What is the status of invoice INV-1001?"
    once = [restyle(text, "dev", random.Random(7)) for _ in range(3)]
    assert len(set(once)) == 1
