from sliceai.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_TYPE_UNSPECIFIED: _ClassVar[RequestType]
    REQUEST_TYPE_APPLICATION_SPECIFIC: _ClassVar[RequestType]
    REQUEST_TYPE_SESSION_SPECIFIC: _ClassVar[RequestType]

class AllocationDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALLOCATION_DIRECTION_UNSPECIFIED: _ClassVar[AllocationDirection]
    ALLOCATION_DIRECTION_DOWNLINK: _ClassVar[AllocationDirection]
    ALLOCATION_DIRECTION_UPLINK: _ClassVar[AllocationDirection]
    ALLOCATION_DIRECTION_BOTH: _ClassVar[AllocationDirection]
REQUEST_TYPE_UNSPECIFIED: RequestType
REQUEST_TYPE_APPLICATION_SPECIFIC: RequestType
REQUEST_TYPE_SESSION_SPECIFIC: RequestType
ALLOCATION_DIRECTION_UNSPECIFIED: AllocationDirection
ALLOCATION_DIRECTION_DOWNLINK: AllocationDirection
ALLOCATION_DIRECTION_UPLINK: AllocationDirection
ALLOCATION_DIRECTION_BOTH: AllocationDirection

class KpmRecord(_message.Message):
    __slots__ = ("name", "slice", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    slice: str
    value: float
    def __init__(self, name: _Optional[str] = ..., slice: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class KpmReport(_message.Message):
    __slots__ = ("source_id", "timestamp_unix_s", "granularity_period_s", "records")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    timestamp_unix_s: float
    granularity_period_s: float
    records: _containers.RepeatedCompositeFieldContainer[KpmRecord]
    def __init__(self, source_id: _Optional[str] = ..., timestamp_unix_s: _Optional[float] = ..., granularity_period_s: _Optional[float] = ..., records: _Optional[_Iterable[_Union[KpmRecord, _Mapping]]] = ...) -> None: ...

class PushTelemetryResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class ForecastRequest(_message.Message):
    __slots__ = ("slices", "horizon", "levels")
    SLICES_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    slices: _containers.RepeatedScalarFieldContainer[str]
    horizon: int
    levels: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, slices: _Optional[_Iterable[str]] = ..., horizon: _Optional[int] = ..., levels: _Optional[_Iterable[float]] = ...) -> None: ...

class SliceForecast(_message.Message):
    __slots__ = ("slice", "dl_bps", "ul_bps")
    SLICE_FIELD_NUMBER: _ClassVar[int]
    DL_BPS_FIELD_NUMBER: _ClassVar[int]
    UL_BPS_FIELD_NUMBER: _ClassVar[int]
    slice: str
    dl_bps: _containers.RepeatedScalarFieldContainer[float]
    ul_bps: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, slice: _Optional[str] = ..., dl_bps: _Optional[_Iterable[float]] = ..., ul_bps: _Optional[_Iterable[float]] = ...) -> None: ...

class ForecastResponse(_message.Message):
    __slots__ = ("start_unix_s", "interval_s", "horizon", "levels", "slices", "fallback")
    START_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    start_unix_s: float
    interval_s: float
    horizon: int
    levels: _containers.RepeatedScalarFieldContainer[float]
    slices: _containers.RepeatedCompositeFieldContainer[SliceForecast]
    fallback: bool
    def __init__(self, start_unix_s: _Optional[float] = ..., interval_s: _Optional[float] = ..., horizon: _Optional[int] = ..., levels: _Optional[_Iterable[float]] = ..., slices: _Optional[_Iterable[_Union[SliceForecast, _Mapping]]] = ..., fallback: _Optional[bool] = ...) -> None: ...

class SessionFilter(_message.Message):
    __slots__ = ("source_ip", "source_port", "dst_address", "dst_port", "protocol")
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    source_ip: str
    source_port: _containers.RepeatedScalarFieldContainer[int]
    dst_address: str
    dst_port: _containers.RepeatedScalarFieldContainer[int]
    protocol: str
    def __init__(self, source_ip: _Optional[str] = ..., source_port: _Optional[_Iterable[int]] = ..., dst_address: _Optional[str] = ..., dst_port: _Optional[_Iterable[int]] = ..., protocol: _Optional[str] = ...) -> None: ...

class BwInfo(_message.Message):
    __slots__ = ("app_ins_id", "app_name", "request_type", "slice", "fixed_allocation_bps", "allocation_direction", "fixed_bw_priority", "session_filter")
    APP_INS_ID_FIELD_NUMBER: _ClassVar[int]
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    FIXED_ALLOCATION_BPS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    FIXED_BW_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SESSION_FILTER_FIELD_NUMBER: _ClassVar[int]
    app_ins_id: str
    app_name: str
    request_type: RequestType
    slice: str
    fixed_allocation_bps: int
    allocation_direction: AllocationDirection
    fixed_bw_priority: int
    session_filter: _containers.RepeatedCompositeFieldContainer[SessionFilter]
    def __init__(self, app_ins_id: _Optional[str] = ..., app_name: _Optional[str] = ..., request_type: _Optional[_Union[RequestType, str]] = ..., slice: _Optional[str] = ..., fixed_allocation_bps: _Optional[int] = ..., allocation_direction: _Optional[_Union[AllocationDirection, str]] = ..., fixed_bw_priority: _Optional[int] = ..., session_filter: _Optional[_Iterable[_Union[SessionFilter, _Mapping]]] = ...) -> None: ...

class BwAllocation(_message.Message):
    __slots__ = ("allocation_id", "bw_info", "created_unix_s", "modified_unix_s")
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    BW_INFO_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    bw_info: BwInfo
    created_unix_s: float
    modified_unix_s: float
    def __init__(self, allocation_id: _Optional[str] = ..., bw_info: _Optional[_Union[BwInfo, _Mapping]] = ..., created_unix_s: _Optional[float] = ..., modified_unix_s: _Optional[float] = ...) -> None: ...

class ModifyBandwidthRequest(_message.Message):
    __slots__ = ("allocation_id", "bw_info")
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    BW_INFO_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    bw_info: BwInfo
    def __init__(self, allocation_id: _Optional[str] = ..., bw_info: _Optional[_Union[BwInfo, _Mapping]] = ...) -> None: ...

class ReleaseBandwidthRequest(_message.Message):
    __slots__ = ("allocation_id",)
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    def __init__(self, allocation_id: _Optional[str] = ...) -> None: ...

class ReleaseBandwidthResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: BwAllocation
    def __init__(self, released: _Optional[_Union[BwAllocation, _Mapping]] = ...) -> None: ...

class ListBandwidthRequest(_message.Message):
    __slots__ = ("app_ins_id", "slice")
    APP_INS_ID_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    app_ins_id: str
    slice: str
    def __init__(self, app_ins_id: _Optional[str] = ..., slice: _Optional[str] = ...) -> None: ...

class ListBandwidthResponse(_message.Message):
    __slots__ = ("allocations",)
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    allocations: _containers.RepeatedCompositeFieldContainer[BwAllocation]
    def __init__(self, allocations: _Optional[_Iterable[_Union[BwAllocation, _Mapping]]] = ...) -> None: ...

class WatchAllocationsRequest(_message.Message):
    __slots__ = ("slices",)
    SLICES_FIELD_NUMBER: _ClassVar[int]
    slices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, slices: _Optional[_Iterable[str]] = ...) -> None: ...
