#!/usr/bin/env bash
# OpenFlow end-to-end test on a real Open vSwitch (userspace datapath), hosts in
# network namespaces, the sliceai controller plugin (os-ken) and the service.
# Needs root and: openvswitch-switch iperf3 iputils-ping ethtool iproute2.
# Everything it makes carries a random suffix and is removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" != 0 ]; then
  echo "sims/ovs/e2e.sh: needs root (network namespaces, Open vSwitch)" >&2
  exit 2
fi
for tool in ovsdb-server ovs-vswitchd ovs-vsctl ovs-ofctl iperf3 ethtool ip; do
  command -v "$tool" >/dev/null || {
    echo "sims/ovs/e2e.sh: $tool missing: apt-get install -y --no-install-recommends openvswitch-switch iperf3 iputils-ping ethtool iproute2" >&2
    exit 2
  }
done

PY=${PY:-.venv/bin/python}
# One process (no xdist): the tests share one testbed and measure rates on 2 cores.
exec "$PY" -m pytest -m ovs -p no:xdist -p no:cacheprovider --timeout 240 -v tests/e2e "$@"
