"""Resource sampling for the dashboard: GPU utilisation and memory through NVML when a GPU is present, CPU and
RAM through psutil otherwise. Every sample is a dict of percentages; failures degrade to an empty dict.

>>> s = Sampler(); sorted(s.sample())   # doctest: +SKIP
['CPU %', 'RAM %']
"""
from __future__ import annotations

import logging

log = logging.getLogger("autoresearch_nb")


class Sampler:
    """Reads utilisation now; ``kind`` is ``"gpu"`` (NVML, device 0) or ``"cpu"`` (psutil)."""

    def __init__(self, prefer_gpu: bool = True) -> None:
        self.kind = "cpu"
        self._nvml = None
        self._handle = None
        self.device = ""
        if prefer_gpu:
            try:
                import pynvml  # nvidia-ml-py

                pynvml.nvmlInit()
                if pynvml.nvmlDeviceGetCount() > 0:
                    self._nvml = pynvml
                    self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
                    name = pynvml.nvmlDeviceGetName(self._handle)
                    self.device = name.decode() if isinstance(name, bytes) else str(name)
                    self.kind = "gpu"
            except Exception:  # no driver, no GPU, no library: fall back to the CPU
                self._nvml = None
        if self.kind == "cpu":
            try:
                import psutil

                psutil.cpu_percent(interval=None)  # the first call only primes the counter
                self.device = f"{psutil.cpu_count()} CPUs"
            except Exception:
                log.debug("psutil unavailable; no resource sampling")

    def sample(self) -> dict[str, float]:
        """Percentages: ``GPU %`` and ``GPU mem %``, or ``CPU %`` and ``RAM %``."""
        try:
            if self._nvml is not None:
                util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
                mem = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
                return {"GPU %": float(util.gpu), "GPU mem %": 100.0 * mem.used / max(mem.total, 1)}
            import psutil

            return {"CPU %": float(psutil.cpu_percent(interval=None)),
                    "RAM %": float(psutil.virtual_memory().percent)}
        except Exception:
            return {}
