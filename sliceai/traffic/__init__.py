"""Traffic traces: model, readers, writers and scenario generators (pure: no torch/grpc/os-ken).

Reading: :func:`open_trace` streams any supported format as :class:`Trace`
chunks (long CSV, column-mapped CSV exports, pcap/pcapng classified by a
policy); :func:`load_trace` joins them for small files. Writing:
:func:`write_long_csv` (atomic). Synthetic traffic: :func:`load_scenario` +
:func:`generate`. Bad input raises :class:`TraceError`; unreadable files a
:class:`TraceReadError` naming the file and position.
"""

from sliceai.traffic.generators import ScenarioError, bundled_scenarios, generate, load_scenario
from sliceai.traffic.longcsv import read_long_csv, write_long_csv
from sliceai.traffic.mapped import ColumnMapping, load_mapping, read_mapped_csv
from sliceai.traffic.pcap import PcapStats, read_pcap
from sliceai.traffic.readers import load_trace, open_trace
from sliceai.traffic.trace import DIRECTION_NAMES, DL, UL, Trace, TraceError, TraceReadError

__all__ = [
    "DIRECTION_NAMES",
    "DL",
    "UL",
    "ColumnMapping",
    "PcapStats",
    "ScenarioError",
    "Trace",
    "TraceError",
    "TraceReadError",
    "bundled_scenarios",
    "generate",
    "load_mapping",
    "load_scenario",
    "load_trace",
    "open_trace",
    "read_long_csv",
    "read_mapped_csv",
    "read_pcap",
    "write_long_csv",
]
