"""Before paying, in your own code: which models the API is retiring, and what replaces them."""

from __future__ import annotations

from kling_provider.hooks.kling import KlingHook


def models_to_move(hook: KlingHook, models: list[str]) -> dict[str, str | None]:
    """Model -> its replacement, for each model the deprecation feed lists as deprecated or
    superseded; a withdrawn one raises ``KlingModelWithdrawnError`` (nothing paid)."""
    moves: dict[str, str | None] = {}
    for model in models:
        entry = hook.check_model(model)  # logged in the task log and counted, like the operators
        if entry is not None:
            moves[model] = entry.replaced_by
    return moves
