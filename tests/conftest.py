"""Shared test setup. Hypothesis profiles: `default` keeps CI quick; run
`pytest --hypothesis-profile=long tests/ir/test_properties.py` for a deep fuzz."""

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile("default")
