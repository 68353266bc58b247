"""A Prometheus histogram for values that may be negative (kept apart from
``service.metrics``, whose classes are the metric sets themselves)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Histogram
from prometheus_client.samples import Sample


class SignedHistogram(Histogram):
    """A histogram of values that may be negative which still exports ``_sum``.

    prometheus-client drops ``_sum`` when the lowest bucket is negative (OpenMetrics wants a
    ``_gsum`` there); the Prometheus text format served on /metrics has no such rule, and the
    dashboard's mean responsiveness is ``rate(_sum) / rate(_count)``.
    """

    def _child_samples(self) -> Iterable[Sample]:
        samples = list(super()._child_samples())
        if not any(s.name == "_sum" for s in samples):
            samples.append(Sample("_sum", {}, self._sum.get(), None, None))
        return tuple(samples)
