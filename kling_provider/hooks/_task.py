"""One hook per task run: the ``hook`` the operators and the sensor use, closed when they end.

A :class:`~kling_provider.hooks.kling.KlingHook` resolves its connection once and keeps one
keep-alive client; building one on every ``hook`` access looked the connection up again and left
clients open. :class:`TaskHook` caches it for the task's entry point (``execute``,
``execute_complete``, ``execute_recovered``), and :func:`closes_hook` closes and forgets it when
that entry point returns, raises or defers, so each entry point starts with a fresh one.

The operator and sensor classes inherit :class:`TaskHook`, so parsing a DAG file imports this
module: the hook module itself is imported on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from kling_provider.hooks.kling import KlingHook

__all__ = ["TaskHook", "closes_hook"]

_Method = TypeVar("_Method", bound=Callable[..., Any])


class TaskHook:
    """Mixin: ``hook``, one :class:`KlingHook` of ``kling_conn_id`` per task entry point."""

    kling_conn_id: str

    @functools.cached_property
    def hook(self) -> KlingHook:
        from kling_provider.hooks.kling import KlingHook  # httpx: execute time only (parse cost)

        return KlingHook(kling_conn_id=self.kling_conn_id)

    def close_hook(self) -> None:
        """Close the entry point's hook (its client), if it made one; the next access makes a
        new one."""
        hook = self.__dict__.pop("hook", None)
        if hook is not None:
            hook.close()


def closes_hook(method: _Method) -> _Method:
    """Decorate a task entry point: its hook is closed when it returns, raises or defers."""

    @functools.wraps(method)
    def run(self: TaskHook, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            self.close_hook()

    return cast(_Method, run)
