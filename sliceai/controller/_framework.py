"""The SDN framework the app runs in: os-ken 4.x (preferred) or Ryu 4.34, same names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

try:
    from os_ken.base import app_manager
    from os_ken.controller import event, ofp_event
    from os_ken.controller.handler import (
        CONFIG_DISPATCHER,
        DEAD_DISPATCHER,
        MAIN_DISPATCHER,
        set_ev_cls,
    )
    from os_ken.lib import hub
    from os_ken.ofproto import ofproto_v1_3

    BaseApp: Any = app_manager.OSKenApp
    FRAMEWORK = "os-ken"
except ImportError:  # pragma: no cover - exercised only where Ryu is installed instead
    from ryu.base import app_manager
    from ryu.controller import event, ofp_event
    from ryu.controller.handler import (
        CONFIG_DISPATCHER,
        DEAD_DISPATCHER,
        MAIN_DISPATCHER,
        set_ev_cls,
    )
    from ryu.lib import hub
    from ryu.ofproto import ofproto_v1_3

    BaseApp = app_manager.RyuApp
    FRAMEWORK = "ryu"

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def on_event(ev_cls: Any, dispatchers: Any = None) -> Callable[[_Handler], _Handler]:
    """``set_ev_cls`` with a type: register a method as the handler of ``ev_cls``."""
    return cast(Callable[[_Handler], _Handler], set_ev_cls(ev_cls, dispatchers))


__all__ = [
    "CONFIG_DISPATCHER",
    "DEAD_DISPATCHER",
    "FRAMEWORK",
    "MAIN_DISPATCHER",
    "BaseApp",
    "app_manager",
    "event",
    "hub",
    "ofp_event",
    "ofproto_v1_3",
    "on_event",
    "set_ev_cls",
]
