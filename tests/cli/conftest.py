"""Fixtures of the CLI tests: the session's moto server for commands that need S3."""

from tests.moto_server import aws_test_env, moto_server, s3_bucket  # noqa: F401
