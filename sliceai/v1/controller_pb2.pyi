from sliceai.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hello(_message.Message):
    __slots__ = ("source_id", "datapath_ids", "software", "slice_table")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    DATAPATH_IDS_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_FIELD_NUMBER: _ClassVar[int]
    SLICE_TABLE_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    datapath_ids: _containers.RepeatedScalarFieldContainer[int]
    software: str
    slice_table: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source_id: _Optional[str] = ..., datapath_ids: _Optional[_Iterable[int]] = ..., software: _Optional[str] = ..., slice_table: _Optional[_Iterable[str]] = ...) -> None: ...

class TelemetryBatch(_message.Message):
    __slots__ = ("datapath_id", "timestamp_unix_s", "period_s", "slices", "slice_ids", "dl_bps", "ul_bps", "dl_dropped_bytes", "ul_dropped_bytes", "end_of_period")
    DATAPATH_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    SLICE_IDS_FIELD_NUMBER: _ClassVar[int]
    DL_BPS_FIELD_NUMBER: _ClassVar[int]
    UL_BPS_FIELD_NUMBER: _ClassVar[int]
    DL_DROPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    UL_DROPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    END_OF_PERIOD_FIELD_NUMBER: _ClassVar[int]
    datapath_id: int
    timestamp_unix_s: float
    period_s: float
    slices: _containers.RepeatedScalarFieldContainer[str]
    slice_ids: _containers.RepeatedScalarFieldContainer[int]
    dl_bps: _containers.RepeatedScalarFieldContainer[float]
    ul_bps: _containers.RepeatedScalarFieldContainer[float]
    dl_dropped_bytes: _containers.RepeatedScalarFieldContainer[int]
    ul_dropped_bytes: _containers.RepeatedScalarFieldContainer[int]
    end_of_period: bool
    def __init__(self, datapath_id: _Optional[int] = ..., timestamp_unix_s: _Optional[float] = ..., period_s: _Optional[float] = ..., slices: _Optional[_Iterable[str]] = ..., slice_ids: _Optional[_Iterable[int]] = ..., dl_bps: _Optional[_Iterable[float]] = ..., ul_bps: _Optional[_Iterable[float]] = ..., dl_dropped_bytes: _Optional[_Iterable[int]] = ..., ul_dropped_bytes: _Optional[_Iterable[int]] = ..., end_of_period: _Optional[bool] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("hello", "telemetry")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    telemetry: TelemetryBatch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., telemetry: _Optional[_Union[TelemetryBatch, _Mapping]] = ...) -> None: ...

class PolicyUpdate(_message.Message):
    __slots__ = ("version", "yaml", "name")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    version: int
    yaml: str
    name: str
    def __init__(self, version: _Optional[int] = ..., yaml: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("policy", "plan")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    policy: PolicyUpdate
    plan: _common_pb2.Plan
    def __init__(self, policy: _Optional[_Union[PolicyUpdate, _Mapping]] = ..., plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ...) -> None: ...
