"""Defaults of the stacks that code outside Pulumi also needs (no pulumi import here)."""

from __future__ import annotations

#: Ubuntu 22.04 LTS (amd64) published by Canonical, resolved at deploy time
AMI_PARAMETER = "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
#: AWS Deep Learning Base AMI with NVIDIA drivers (Ubuntu 22.04), resolved at deploy time
GPU_AMI_PARAMETER = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)
ROOT_VOLUME_GB = 100
