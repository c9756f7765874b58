#!/usr/bin/env bash
# The controller app under Ryu 4.34 (not os-ken) on a real Open vSwitch: `make ryu-check`.
# Builds a throwaway venv with ryu==4.34 (downloads from PyPI; setuptools<68 for
# Ryu's build) and what sliceai.controller imports, pinned to constraints.txt, then
# runs sims/ovs/ryu_check.py with the project's venv: bridge, `sliceai serve`,
# `python -m sliceai.controller.ryu_manager --enable-debugger` and the checks.
# Needs root and: openvswitch-switch iputils-ping ethtool iproute2. Not part of
# .ci/run. RYU_VENV=DIR keeps the venv there (reused when it already has Ryu 4.34);
# by default it lives in a temporary folder removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
me=sims/ovs/ryu-check.sh
start=$(date +%s)

if [ "$(id -u)" != 0 ]; then
  echo "$me: needs root (network namespaces, Open vSwitch)" >&2
  exit 2
fi
for tool in ovsdb-server ovs-vswitchd ovs-vsctl ovs-ofctl ethtool ip ping; do
  command -v "$tool" >/dev/null || {
    echo "$me: $tool missing: apt-get install -y --no-install-recommends openvswitch-switch iputils-ping ethtool iproute2" >&2
    exit 2
  }
done
PY=${PY:-.venv/bin/python}
PYTHON=${PYTHON:-python3}
[ -x "$PY" ] || { echo "$me: $PY missing: run 'make venv' first" >&2; exit 2; }

work=$(mktemp -d /tmp/sliceai-ryu-venv.XXXXXX)
cleanup() {
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

venv=${RYU_VENV:-$work/venv}
ryu_py=$venv/bin/python
if [ -n "${RYU_VENV:-}" ] && "$ryu_py" -c 'import ryu, pkg_resources; assert pkg_resources.get_distribution("ryu").version == "4.34"' 2>/dev/null; then
  echo "$me: reusing $venv"
else
  echo "$me: installing ryu==4.34 and the controller's imports into $venv"
  "$PYTHON" -m venv "$venv"
  # constraints.txt pins what the project uses (eventlet, oslo.config, grpcio, protobuf, ...);
  # setuptools<68 reaches Ryu's isolated build through PIP_CONSTRAINT.
  { grep -v -E '^(#|$)' constraints.txt; echo 'setuptools<68'; } >"$work/constraints.txt"
  # What `import sliceai.controller.app` (and its gRPC link) needs besides Ryu: pydantic,
  # PyYAML (sliceai.policy), grpcio and protobuf (sliceai.v1), numpy (Policy.incidence).
  if ! PIP_CONSTRAINT=$work/constraints.txt "$venv/bin/pip" install --quiet \
      ryu==4.34 pydantic pyyaml grpcio protobuf numpy >"$work/pip.log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$work/pip.log" | tail -40 >&2
    echo "$me: FAIL: pip could not install ryu==4.34 and the controller's imports" >&2
    exit 1
  fi
fi

# The app must load under Ryu, not os-ken (the framework shim prefers os-ken when present).
if ! PYTHONPATH=$PWD "$ryu_py" -W ignore - <<'EOF'
import importlib, sys
wsgi = importlib.import_module("eventlet.wsgi")  # the ALREADY_HANDLED shim of ryu_manager
if not hasattr(wsgi, "ALREADY_HANDLED"):
    wsgi.ALREADY_HANDLED = object()
import ryu, pkg_resources
import sliceai.controller.app, sliceai.controller.service_link
from sliceai.v1 import controller_pb2_grpc  # noqa
from sliceai.controller._framework import FRAMEWORK
version = pkg_resources.get_distribution("ryu").version
print(f"ryu {version}, sliceai.controller runs on {FRAMEWORK}")
sys.exit(0 if FRAMEWORK == "ryu" and version == "4.34" else 1)
EOF
then
  echo "$me: FAIL: sliceai.controller does not import on Ryu 4.34 in $venv" >&2
  exit 1
fi

# In the background so that a SIGTERM to this script reaches the driver, which then
# removes the bridge, namespaces, daemons and processes it made before exiting.
"$PY" sims/ovs/ryu_check.py --ryu-python "$ryu_py" "$@" &
driver=$!
trap 'kill -TERM "$driver" 2>/dev/null || true' INT TERM
rc=0
wait "$driver" || rc=$?
while kill -0 "$driver" 2>/dev/null; do  # a trapped signal ended `wait` early
  wait "$driver" || rc=$?
done
if [ "$rc" = 0 ]; then
  echo "$me: PASS in $(($(date +%s) - start)) s"
else
  echo "$me: FAIL (exit $rc) after $(($(date +%s) - start)) s" >&2
  exit 1
fi
