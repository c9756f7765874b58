"""``sliceai controller``: load the os-ken app and run it until SIGTERM or Ctrl-C.

os-ken 4 ships no ``osken-manager``; this launcher loads the app with
``AppManager.load_apps`` / ``instantiate_apps`` and waits on the app threads.
The OpenFlow listen address goes into os-ken's ``CONF`` options
(``ofp_listen_host``, ``ofp_tcp_listen_port``). Without os-ken installed,
:func:`sliceai.cli.main` cannot load this module and says to install
``sliceai[controller]``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from os_ken import cfg
from os_ken.base.app_manager import AppManager
from os_ken.lib import hub

from sliceai.controller import app
from sliceai.controller.flows import ControllerConfigError
from sliceai.controller.settings import host_port, settings_from_args
from sliceai.usage import UsageError

APP_MODULE = "sliceai.controller.app"


def run(args: argparse.Namespace) -> int:
    """Run the app with the parsed ``sliceai controller`` options; 0 once stopped."""
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        ofp_host, ofp_port = host_port(args.ofp_listen, "--ofp-listen")
        settings = settings_from_args(args)
    except (argparse.ArgumentTypeError, ControllerConfigError) as exc:
        raise UsageError(str(exc)) from None
    app.configure(settings)
    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", ofp_host)
    cfg.CONF.set_override("ofp_tcp_listen_port", ofp_port)
    manager = AppManager.get_instance()
    manager.load_apps([APP_MODULE])
    contexts = manager.create_contexts()
    threads = manager.instantiate_apps(**contexts)

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(f"sliceai controller: OpenFlow on {ofp_host}:{ofp_port}", file=sys.stderr, flush=True)
    try:
        hub.joinall(threads)
    except KeyboardInterrupt:
        pass
    finally:
        manager.close()
    return 0
