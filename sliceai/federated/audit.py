"""What may reach the server: a check of every message it receives (:class:`MessageAudit`,
the ``inspect`` of :func:`sliceai.federated.apps.make_server_app`).

A site may send only:

- without secure aggregation, its parameters: arrays of exactly the network's
  parameter shapes, float32, in ``state_dict`` order;
- with SecAgg+, the protocol's records: two public keys (``pk1``, ``pk2``), encrypted key
  shares for its neighbours (``ctxts``, with their node ids ``dsts``), the masked vector
  (``masked_params``: the weight factor, shape ``(1,)``, then arrays of the parameter
  shapes, integers below the modulus: a quantized update plus masks) and, at the end,
  shares of the keys of its neighbours (``shares``, node ids ``nids``); the legacy fit
  result around it carries an empty parameter record;
- the fit result's bookkeeping: ``num_examples`` (1: every site weighs the same), a status
  code and message, and no metrics.

Anything else (another key, another shape, a byte string longer than a key share) is a
violation, and so is a message with an error. Each message is also scanned for the raw
bytes of the ``canaries`` (e.g. float64 windows of a site's traces): the tests put the
traces there to show that no part of them is in any message.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.common import bytes_to_ndarray

#: Longest byte string of the SecAgg+ protocol that is not a masked vector: a public key
#: (about 120 bytes) or an encrypted share of two keys (about 250 bytes).
MAX_PROTOCOL_BYTES = 1024
SECAGG = "secaggplus_configs"
#: Keys of the SecAgg+ replies, with what their values may be.
SECAGG_KEYS = {"pk1", "pk2", "dsts", "ctxts", "masked_params", "nids", "shares"}
FIT_CONFIGS = {"fitres.metrics", "fitres.status"}
FIT_METRICS = {"fitres.num_examples"}
FIT_ARRAYS = {"fitres.parameters"}


@dataclass
class MessageAudit:
    """Checks each message the server receives (callable; thread-safe); ``violations``
    lists what broke the rules, ``counts`` what was seen."""

    shapes: Sequence[tuple[int, ...]]
    modulus: int = 2**32
    canaries: Sequence[bytes] = ()
    violations: list[str] = field(default_factory=list)
    messages: int = 0
    parameter_sets: int = 0
    masked_vectors: int = 0
    bytes_seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, msg: Message) -> None:
        with self._lock:
            self.messages += 1
            if msg.has_error() or not msg.has_content():
                self._bad(f"message with an error or no content: {msg.error}")
                return
            content = msg.content
            extra = (
                set(content.keys())
                - set(content.array_records)
                - set(content.config_records)
                - set(content.metric_records)
            )
            if extra:
                self._bad(f"records of another kind: {sorted(extra)}")
            for name, rec in content.array_records.items():
                self._arrays(name, [rec[k].numpy() for k in rec])
            for name, cfg in content.config_records.items():
                self._configs(name, dict(cfg))
            for name, met in content.metric_records.items():
                if name not in FIT_METRICS:
                    self._bad(f"metric record {name!r}")
                elif dict(met) != {"num_examples": 1}:
                    self._bad(f"{name}: {dict(met)!r} (a site reports weight 1)")

    def _bad(self, what: str) -> None:
        self.violations.append(what)

    def _scan(self, blob: bytes) -> None:
        self.bytes_seen += len(blob)
        for canary in self.canaries:
            if canary and canary in blob:
                self._bad("a site's raw trace bytes reached the server")

    def _arrays(self, name: str, arrays: list[np.ndarray[Any, Any]]) -> None:
        if name not in FIT_ARRAYS:
            self._bad(f"array record {name!r}")
            return
        if not arrays:
            return  # SecAgg+ empties the plain parameters
        got = [tuple(a.shape) for a in arrays]
        if got != [tuple(s) for s in self.shapes]:
            self._bad(f"{name}: shapes {got[:4]}... are not the network's")
        for a in arrays:
            if a.dtype != np.float32:
                self._bad(f"{name}: dtype {a.dtype}")
            self._scan(a.tobytes())
        self.parameter_sets += 1

    def _configs(self, name: str, values: dict[str, Any]) -> None:
        if name in FIT_CONFIGS:
            if name == "fitres.metrics" and values:
                self._bad(f"fit metrics {sorted(values)}")
            if name == "fitres.status" and set(values) - {"code", "message"}:
                self._bad(f"fit status keys {sorted(values)}")
            for v in values.values():
                if isinstance(v, str) and len(v) > 200:
                    self._bad("a long status message")
            return
        if name != SECAGG:
            self._bad(f"config record {name!r}")
            return
        unknown = set(values) - SECAGG_KEYS
        if unknown:
            self._bad(f"SecAgg+ keys {sorted(unknown)}")
        for key, value in values.items():
            if key == "masked_params":
                self._masked(list(value))
            elif key in ("dsts", "nids"):
                if not all(isinstance(v, int) for v in _items(value)):
                    self._bad(f"{key}: not node ids")
            else:
                for blob in _items(value):
                    if not isinstance(blob, bytes) or len(blob) > MAX_PROTOCOL_BYTES:
                        self._bad(f"{key}: a value that is not a key or key share")
                    else:
                        self._scan(blob)

    def _masked(self, blobs: list[Any]) -> None:
        arrays = [bytes_to_ndarray(b) for b in blobs]
        for b in blobs:
            self._scan(b)
        got = [tuple(a.shape) for a in arrays]
        want = [(1,), *[tuple(s) for s in self.shapes]]
        if got != want:
            self._bad(f"masked vector of shapes {got[:4]}... (want the factor and the network's)")
        for a in arrays:
            if a.dtype.kind not in "iu" or (a.size and (a.min() < 0 or a.max() >= self.modulus)):
                self._bad(f"masked vector entries not integers below the modulus ({a.dtype})")
                break
        self.masked_vectors += 1


def _items(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else [value]
