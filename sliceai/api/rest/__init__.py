"""ETSI MEC 015 Bandwidth Management API (v2.1.1) over REST, beside the gRPC service.

:mod:`.mapping` (pydantic only, part of the base install) holds the ``BwInfo`` /
``BwInfoDeltas`` models and maps them onto the engine's grants; :mod:`.app` (FastAPI)
and :mod:`.serve` (uvicorn, mutual TLS) come with the optional extra ``rest`` and are
loaded only by ``sliceai serve --rest`` (through :func:`sliceai.plugins.load`).
"""
