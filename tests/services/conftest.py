"""Fixtures of the service tests: the session's moto server for those that need S3."""

from tests.moto_server import aws_test_env, moto_server, s3_bucket  # noqa: F401
