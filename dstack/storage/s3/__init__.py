"""The S3 state store, split by concern (botocore and awscrt are imported lazily):

- ``storage``: ``S3Storage``, the ``Storage`` implementation;
- ``client``: the botocore client (region, profile, endpoint, retries, fork safety);
- ``errors``: botocore errors mapped to dstack errors, in one place;
- ``aws_errors``: transient AWS failures told from final ones, retried under a deadline;
- ``probe``: checking a bucket for `dstack config` (exists, region, access);
- ``transfers``, ``files``: whole files and trees through botocore;
- ``crt``: batches of files through the AWS Common Runtime.
"""
