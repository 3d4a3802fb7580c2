"""The prompt window: how a prompt too long for a model's window is cut.

Training cuts every prompt too long for ``--max-length`` so, and serving with
``UMIQ_PROMPT_WINDOW`` cuts the same way, so the served prompt is the trained one. It
lives here, apart from both, because serving (``worker.models``) must not import
training (``worker.training``). Pure: token ids in, token ids out.
"""

from __future__ import annotations


def cut_prompt(prompt: list[int], room: int, bos: int | None) -> list[int]:
    """``prompt`` cut to ``room`` tokens: a leading BOS and the last tokens stay."""
    if len(prompt) <= room:
        return prompt
    head = prompt[:1] if bos is not None and prompt and prompt[0] == bos else []
    body = room - len(head)
    return head + prompt[len(prompt) - body :] if body > 0 else head[:room]
