"""The attack suite runs against the same live network as tests/api (chain, indexer, API, submitter)."""

from tests.api.conftest import consortium, net

__all__ = ["consortium", "net"]
