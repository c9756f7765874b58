"""Run the app under Ryu 4.34: ``python -m sliceai.controller.ryu_manager --enable-debugger ...``.

Ryu 4.34 (2020) needs two things on Python 3.11 (see sims/ovs/README.md):

* it is built with ``setuptools<68`` (``PIP_CONSTRAINT`` file holding that line);
* ``ryu/app/wsgi.py`` imports ``ALREADY_HANDLED`` from ``eventlet.wsgi``, which
  eventlet >= 0.30.3 no longer has: this module defines it before Ryu imports it,
  then hands over to ``ryu-manager``'s own ``main``.

Pass ``--enable-debugger``: without it ryu-manager monkey-patches threads and
the gRPC stream to the service deadlocks the controller. The app's options go
in the ``SLICEAI_CONTROLLER_ARGS`` environment variable (the same options as
``sliceai controller``), the OpenFlow listen address in Ryu's own
``--ofp-listen-host`` / ``--ofp-tcp-listen-port``.
"""

from __future__ import annotations

import sys

from sliceai.plugins import load


def main() -> None:
    # Loaded by name (sliceai.plugins): eventlet.wsgi must be patched before Ryu is imported.
    wsgi = load("eventlet.wsgi")
    if not hasattr(wsgi, "ALREADY_HANDLED"):
        setattr(wsgi, "ALREADY_HANDLED", object())  # noqa: B010 - the shim: a unique sentinel
    if "--enable-debugger" not in sys.argv:
        print(
            "sliceai: add --enable-debugger (thread monkey-patching deadlocks gRPC)",
            file=sys.stderr,
        )
    ryu_main = load("ryu.cmd.manager:main")
    if not any(a.endswith("sliceai.controller.app") for a in sys.argv[1:]):
        sys.argv.append("sliceai.controller.app")
    ryu_main()


if __name__ == "__main__":
    main()
