from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlanMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_MODE_UNSPECIFIED: _ClassVar[PlanMode]
    PLAN_MODE_OPTIMIZED: _ClassVar[PlanMode]
    PLAN_MODE_MODEL_FALLBACK: _ClassVar[PlanMode]
    PLAN_MODE_LAST_PLAN: _ClassVar[PlanMode]
    PLAN_MODE_GUARANTEES_ONLY: _ClassVar[PlanMode]
PLAN_MODE_UNSPECIFIED: PlanMode
PLAN_MODE_OPTIMIZED: PlanMode
PLAN_MODE_MODEL_FALLBACK: PlanMode
PLAN_MODE_LAST_PLAN: PlanMode
PLAN_MODE_GUARANTEES_ONLY: PlanMode

class SliceAllocation(_message.Message):
    __slots__ = ("slice", "snssai", "dl_bps", "ul_bps", "guaranteed_dl_bps", "guaranteed_ul_bps", "forecast_dl_bps", "forecast_ul_bps", "measured_dl_bps", "measured_ul_bps", "granted_dl_bps", "granted_ul_bps", "stale", "explanation")
    SLICE_FIELD_NUMBER: _ClassVar[int]
    SNSSAI_FIELD_NUMBER: _ClassVar[int]
    DL_BPS_FIELD_NUMBER: _ClassVar[int]
    UL_BPS_FIELD_NUMBER: _ClassVar[int]
    GUARANTEED_DL_BPS_FIELD_NUMBER: _ClassVar[int]
    GUARANTEED_UL_BPS_FIELD_NUMBER: _ClassVar[int]
    FORECAST_DL_BPS_FIELD_NUMBER: _ClassVar[int]
    FORECAST_UL_BPS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_DL_BPS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_UL_BPS_FIELD_NUMBER: _ClassVar[int]
    GRANTED_DL_BPS_FIELD_NUMBER: _ClassVar[int]
    GRANTED_UL_BPS_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    slice: str
    snssai: str
    dl_bps: float
    ul_bps: float
    guaranteed_dl_bps: float
    guaranteed_ul_bps: float
    forecast_dl_bps: float
    forecast_ul_bps: float
    measured_dl_bps: float
    measured_ul_bps: float
    granted_dl_bps: float
    granted_ul_bps: float
    stale: bool
    explanation: str
    def __init__(self, slice: _Optional[str] = ..., snssai: _Optional[str] = ..., dl_bps: _Optional[float] = ..., ul_bps: _Optional[float] = ..., guaranteed_dl_bps: _Optional[float] = ..., guaranteed_ul_bps: _Optional[float] = ..., forecast_dl_bps: _Optional[float] = ..., forecast_ul_bps: _Optional[float] = ..., measured_dl_bps: _Optional[float] = ..., measured_ul_bps: _Optional[float] = ..., granted_dl_bps: _Optional[float] = ..., granted_ul_bps: _Optional[float] = ..., stale: _Optional[bool] = ..., explanation: _Optional[str] = ...) -> None: ...

class LinkShare(_message.Message):
    __slots__ = ("slice", "dl_bps", "ul_bps")
    SLICE_FIELD_NUMBER: _ClassVar[int]
    DL_BPS_FIELD_NUMBER: _ClassVar[int]
    UL_BPS_FIELD_NUMBER: _ClassVar[int]
    slice: str
    dl_bps: float
    ul_bps: float
    def __init__(self, slice: _Optional[str] = ..., dl_bps: _Optional[float] = ..., ul_bps: _Optional[float] = ...) -> None: ...

class LinkAllocation(_message.Message):
    __slots__ = ("link", "capacity_bps", "shares")
    LINK_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BPS_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    link: str
    capacity_bps: float
    shares: _containers.RepeatedCompositeFieldContainer[LinkShare]
    def __init__(self, link: _Optional[str] = ..., capacity_bps: _Optional[float] = ..., shares: _Optional[_Iterable[_Union[LinkShare, _Mapping]]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("version", "policy_version", "interval_start_unix_s", "interval_s", "computed_at_unix_s", "mode", "slices", "links", "stale_sources", "explanation", "compute_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_START_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    STALE_SOURCES_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    version: int
    policy_version: int
    interval_start_unix_s: float
    interval_s: float
    computed_at_unix_s: float
    mode: PlanMode
    slices: _containers.RepeatedCompositeFieldContainer[SliceAllocation]
    links: _containers.RepeatedCompositeFieldContainer[LinkAllocation]
    stale_sources: _containers.RepeatedScalarFieldContainer[str]
    explanation: str
    compute_ms: float
    def __init__(self, version: _Optional[int] = ..., policy_version: _Optional[int] = ..., interval_start_unix_s: _Optional[float] = ..., interval_s: _Optional[float] = ..., computed_at_unix_s: _Optional[float] = ..., mode: _Optional[_Union[PlanMode, str]] = ..., slices: _Optional[_Iterable[_Union[SliceAllocation, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[LinkAllocation, _Mapping]]] = ..., stale_sources: _Optional[_Iterable[str]] = ..., explanation: _Optional[str] = ..., compute_ms: _Optional[float] = ...) -> None: ...
