"""observe_many (a batch's observations in one update) leaves a histogram as observing one
value at a time does: prometheus_client's own exposition is the oracle (every bucket and the
count exactly; the sum up to float rounding, since a batch is summed before it is added)."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from mdmbus.metrics import _LATENCY_BUCKETS, observe_many


def _series(registry: CollectorRegistry) -> dict[str, float]:
    """Each sample line of the exposition, but the creation time (when the test made it)."""
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("#") or "_created" in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def _histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    return registry, Histogram("h_seconds", "test", ["category"], buckets=_LATENCY_BUCKETS,
                               registry=registry)


def test_a_batch_is_counted_as_its_values_one_by_one() -> None:
    rng = random.Random(7)
    # every bound exactly, just above each, zero, past the last bound, and random values
    values = ([0.0, 1e9] + list(_LATENCY_BUCKETS) + [b * 1.0001 for b in _LATENCY_BUCKETS]
              + [rng.expovariate(5.0) for _ in range(1000)])
    one_by_one, h1 = _histogram()
    batched, h2 = _histogram()
    for v in values:
        h1.labels("upload").observe(v)
    for start in range(0, len(values), 97):  # in batches, as the pipeline writes them
        observe_many(h2.labels("upload"), values[start:start + 97])
    got, want = _series(batched), _series(one_by_one)
    sum_name = 'h_seconds_sum{category="upload"}'
    assert abs(got.pop(sum_name) - want.pop(sum_name)) < 1e-6 * max(1.0, sum(values))
    assert got == want
    assert got['h_seconds_count{category="upload"}'] == len(values)
    assert len(got) == len(_LATENCY_BUCKETS) + 2  # every bucket, +Inf, count


def test_an_empty_batch_changes_nothing() -> None:
    registry, h = _histogram()
    h.labels("upload").observe(0.3)
    before = _series(registry)
    observe_many(h.labels("upload"), [])
    assert _series(registry) == before
