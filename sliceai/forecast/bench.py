"""``sliceai bench forecast``: sampling latency against an autoregressive GRU, int8 effects.

The device comes from ``SLICEAI_BENCH_DEVICE`` (``cpu`` by default, ``cuda`` or
``auto`` on a GPU host); its name is part of every case. The peer is a plain
autoregressive GRU with 64 hidden units (untrained: only its speed matters)
drawing the same number of paths step by step.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from sliceai.bench import Figure, median_ms, time_calls
from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.model import ForecastModel
from sliceai.forecast.pipeline import ForecastPipeline, resolve_device
from sliceai.forecast.training.data import synthetic_series

N_SERIES, CONTEXT, HORIZON, N_SAMPLES = 256, 256, 16, 100


class ARGRUSampler(nn.Module):
    """Reference: GRU-64 over the context, then ``horizon`` autoregressive Gaussian steps.

    ``sample(context (batch, context_len), horizon, n_samples) -> (batch, n_samples, horizon)``.
    """

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.cell = nn.GRUCell(1, hidden)
        self.head = nn.Linear(hidden, 2)

    @torch.inference_mode()
    def sample(self, context: torch.Tensor, horizon: int, n_samples: int) -> torch.Tensor:
        scale = context.mean(dim=1, keepdim=True).clamp(min=1.0)
        x = torch.log1p(context / scale)
        _, h = self.gru(x.unsqueeze(-1))
        h = h[0].repeat_interleave(n_samples, dim=0)
        y = x[:, -1:].repeat_interleave(n_samples, dim=0)
        out = []
        for _ in range(horizon):
            h = self.cell(y, h)
            loc, log_sd = self.head(h).unbind(-1)
            y = (loc + log_sd.exp() * torch.randn_like(loc)).unsqueeze(-1)
            out.append(y)
        paths = torch.expm1(torch.cat(out, dim=1)).clamp(min=0.0)
        return paths.view(-1, n_samples, horizon) * scale.unsqueeze(-1)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.machine()} x{torch.get_num_threads()} threads"


def _pipeline(
    device: torch.device | str, quantize: str | None = None
) -> tuple[ForecastPipeline, str]:
    """The bundled checkpoint (its fast-clock part too), or an untrained network."""
    try:
        return ForecastPipeline.load(device=device, quantize=quantize), "bundled checkpoint"
    except ForecastError:
        model = ForecastModel(ForecastConfig()).eval()
        source = "untrained (no bundled checkpoint)"
        return ForecastPipeline(model, device=device, quantize=quantize), source


def run(quick: bool) -> Iterator[Figure]:
    device = resolve_device(os.environ.get("SLICEAI_BENCH_DEVICE", "cpu"))
    dev_name = _device_name(device)
    repeat = 5 if quick else 30
    series = synthetic_series(N_SERIES, CONTEXT + HORIZON, seed=7)
    values = np.stack([s.values for s in series])
    context, truth = values[:, :CONTEXT], values[:, CONTEXT:]
    starts = np.full(N_SERIES, series[0].start)
    pipe, source = _pipeline(device)

    def ours() -> object:
        return pipe.sample(context, HORIZON, N_SAMPLES, start_time=starts, seed=0)

    torch.manual_seed(0)
    gru = ARGRUSampler().eval().to(device)
    ctx_t = torch.as_tensor(context, dtype=torch.float32)

    def peer() -> object:
        return gru.sample(ctx_t.to(device), HORIZON, N_SAMPLES).cpu().numpy()

    def ours_fast() -> object:
        return pipe.sample(context, HORIZON, N_SAMPLES, start_time=starts, seed=0, interval_s=10.0)

    ours_ms = median_ms(time_calls(ours, repeat, warmup=2))
    peer_ms = median_ms(time_calls(peer, repeat, warmup=2))
    case = f"{N_SERIES} series x ctx {CONTEXT} -> {HORIZON} steps x {N_SAMPLES} paths [{dev_name}]"
    yield Figure.compare(
        "forecast", case, "median latency", ours_ms, "ms", "AR GRU-64 sampler", peer_ms, note=source
    )
    if pipe.at(10.0) is not pipe:  # the fast-clock networks (with their GRU) forecast at 10 s
        fast_ms = median_ms(time_calls(ours_fast, repeat, warmup=2))
        yield Figure.compare(
            "forecast",
            f"the same at a 10 s clock (fast-clock networks) [{dev_name}]",
            "median latency",
            fast_ms,
            "ms",
            "AR GRU-64 sampler",
            peer_ms,
            note=source,
        )

    cpu, _ = _pipeline("cpu")
    int8, _ = _pipeline("cpu", "int8")
    cpu_name = _device_name(torch.device("cpu"))

    def fp32_call() -> object:
        return cpu.sample(context, HORIZON, N_SAMPLES, start_time=starts, seed=0)

    def int8_call() -> object:
        return int8.sample(context, HORIZON, N_SAMPLES, start_time=starts, seed=0)

    fp32_ms = median_ms(time_calls(fp32_call, repeat, warmup=2))
    int8_ms = median_ms(time_calls(int8_call, repeat, warmup=2))
    yield Figure.compare(
        "forecast",
        f"int8 dynamic quantization [{cpu_name}]",
        "median latency",
        int8_ms,
        "ms",
        "fp32",
        fp32_ms,
    )
    scored = truth.mean(axis=1) > 0
    crps = {}
    for name, p in (("fp32", cpu), ("int8", int8)):
        ens = p.sample(context, HORIZON, 200, start_time=starts, seed=1)
        c = crps_ensemble(np.moveaxis(ens, 1, -1), truth).mean(axis=1)
        crps[name] = float(np.mean(c[scored] / truth[scored].mean(axis=1)))
    yield Figure.compare(
        "forecast",
        "int8 dynamic quantization, synthetic series",
        "CRPS / mean load",
        crps["int8"],
        "",
        "fp32",
        crps["fp32"],
        note="ratio - 1 = relative CRPS change from int8",
    )
