"""Conformance suites run against daphne (``make conformance``)."""
