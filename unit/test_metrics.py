"""metrics.observe_all: a batch of observations shows as the same observations one by one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from notifsvc import metrics

_BOUNDS = (0.01, 0.05, 0.1, 0.25, 1.0, 5.0)
_AMOUNTS = st.lists(
    st.one_of(
        st.sampled_from([*_BOUNDS, 0.0, float("inf")]),  # on a bound: that bucket, not the next
        st.floats(min_value=-1.0, max_value=20.0, allow_nan=False),
    ),
    max_size=50,
)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def _pair(labelled: bool) -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    names = ["channel"] if labelled else []
    one = CollectorRegistry()
    batch = CollectorRegistry()
    single = Histogram("h", "h", names, buckets=_BOUNDS, registry=one)
    many = Histogram("h", "h", names, buckets=_BOUNDS, registry=batch)
    return one, single, batch, many


@given(amounts=_AMOUNTS, labelled=st.booleans())
def test_observe_all_equals_single_observations(amounts: list[float], labelled: bool) -> None:
    one, single, batch, many = _pair(labelled)
    if labelled:
        single, many = single.labels("log"), many.labels("log")
    for amount in amounts:
        single.observe(amount)
    metrics.observe_all(many, amounts)
    assert _samples(batch) == _samples(one)


def test_observe_all_adds_to_what_was_observed_before() -> None:
    one, single, batch, many = _pair(False)
    for amount in (0.02, 3.0):
        single.observe(amount)
        many.observe(amount)
    single.observe(0.05)
    single.observe(7.0)
    metrics.observe_all(many, iter([0.05, 7.0]))  # any iterable, read once
    assert _samples(batch) == _samples(one)
    assert _samples(batch)[("h_count", ())] == 4
