"""Benchmark "policy": load + validate a policy of 1,000 slices on 200 links.

Peer: PyYAML's (libyaml) load of the same text alone (parsing without any
validation), so the ratio shows what validation and line tracking cost.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import yaml

from sliceai.bench import Figure, median_ms, time_calls
from sliceai.policy.loader import loads_policy


def synthetic_policy_yaml(
    n_slices: int, n_links: int, links_per_slice: int = 4, seed: int = 0
) -> str:
    """A valid policy text with ``n_slices`` on ``n_links``; each slice crosses a few links."""
    rng = np.random.default_rng(seed)
    five_qis = [1, 2, 3, 7, 9, 82, 85]
    lines = ["name: synthetic", "slices:"]
    members: list[list[str]] = [[] for _ in range(n_links)]
    for i in range(n_slices):
        name = f"s{i}"
        g = int(rng.integers(1, 5))
        proto = "udp" if i % 2 else "tcp"
        lines += [
            f"  - name: {name}",
            f'    snssai: {{sst: {1 + i % 3}, sd: "{i:06X}"}}',
            f"    five_qi: {five_qis[i % len(five_qis)]}",
            f"    guaranteed: {{dl: {g} Mbps, ul: {g / 2:g} Mbps}}",
            f"    maximum: {{dl: {4 * g} Mbps, ul: {2 * g} Mbps}}",
            f"    risk: {rng.choice([0.001, 0.01, 0.05])}",
            "    match:",
            f"      - {{protocol: {proto}, ports: [{10000 + i}], dscp: [{i % 64}]}}",
        ]
        for li in rng.choice(n_links, size=min(links_per_slice, n_links), replace=False):
            members[int(li)].append(name)
    lines += ["topology:", "  links:"]
    for li, names in enumerate(members):
        if not names:
            names = [f"s{li % n_slices}"]
        lines += [
            f"    - name: l{li}",
            "      capacity: 10 Gbps",
            f"      slices: [{', '.join(names)}]",
        ]
    return "\n".join(lines) + "\n"


def run(quick: bool) -> Iterator[Figure]:
    text = synthetic_policy_yaml(1000, 200)
    repeat = 2 if quick else 5
    ours = median_ms(time_calls(lambda: loads_policy(text, "synthetic"), repeat))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    bare = median_ms(time_calls(lambda: yaml.load(text, Loader=loader), repeat))
    yield Figure.compare(
        "policy",
        "1000 slices x 200 links",
        "load+validate",
        ours,
        "ms",
        "PyYAML load only (libyaml)",
        bare,
    )
