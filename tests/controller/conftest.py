"""Shared fixtures of the controller unit tests: a small three-slice policy."""

from __future__ import annotations

import pytest

from sliceai.policy import Policy, loads_policy

POLICY_YAML = """
name: testbed
slices:
  - name: surgery
    snssai: {sst: 2, sd: "0000A1"}
    five_qi: 85
    guaranteed: {dl: 2 Mbps, ul: 2 Mbps}
    maximum: {dl: 10 Mbps, ul: 10 Mbps}
    risk: 0.001
    match:
      - {protocol: udp, ports: [5000]}
  - name: factory
    snssai: {sst: 3, sd: "0000C1"}
    five_qi: 82
    guaranteed: {dl: 5 Mbps, ul: 5 Mbps}
    match:
      - {protocol: tcp, ports: [5201-5203], ip_prefixes: ["10.0.0.0/24"]}
      - {protocol: sctp, dscp: [46], vlan: 20}
  - name: embb
    snssai: {sst: 1}
    five_qi: 9
    guaranteed: {dl: 1 Mbps, ul: 1 Mbps}
    default: true
topology:
  links:
    - name: uplink
      capacity: 1 Gbps
      slices: [surgery, factory, embb]
"""


@pytest.fixture
def policy() -> Policy:
    return loads_policy(POLICY_YAML, "test-policy.yaml")


@pytest.fixture
def policy_without_default() -> Policy:
    text = POLICY_YAML.replace(
        "    default: true\n", "    match:\n      - {protocol: tcp, ports: [80]}\n"
    )
    return loads_policy(text, "no-default.yaml")
