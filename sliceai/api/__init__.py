"""The sliceai gRPC service: servicers, server builder, authorization, client.

Messages are defined in ``proto/sliceai/v1`` (generated into :mod:`sliceai.v1`).
"""
