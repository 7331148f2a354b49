"""What kind of failure a provisioning error is: capacity, quota, permission, or other.

The engine's error (``creating stack X failed: ... api error InsufficientInstanceCapacity:
...``) and boto3's ``ClientError`` both carry EC2's or IAM's error code; the code decides the
class. ``capacity`` and ``quota`` are the ``no-capacity`` retry event (the cloud has no
instance to give now; a quota frees up as other instances end); ``permission`` and ``other``
are errors. ``ProvisioningError`` is the ``ComputeError`` a failed start raises with its
class (``other`` keeps its own line); its line starts with ``retry.NO_CAPACITY_PREFIX`` for
the first two.
"""

from __future__ import annotations

import enum
import re

from dstack.errors import ComputeError
from dstack.retry import NO_CAPACITY_PREFIX


class FailureClass(str, enum.Enum):
    CAPACITY = "capacity"
    QUOTA = "quota"
    PERMISSION = "permission"
    OTHER = "other"

    @property
    def is_no_capacity(self) -> bool:
        return self in (FailureClass.CAPACITY, FailureClass.QUOTA)


#: EC2's error codes of each class (docs: "Error codes for the Amazon EC2 API")
CODES: dict[FailureClass, frozenset[str]] = {
    FailureClass.CAPACITY: frozenset({
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientCapacityOnOutpost",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "Unsupported",  # the type is not offered in the chosen zone
    }),
    FailureClass.QUOTA: frozenset({
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotFleetRequestCountExceeded",
        "SecurityGroupLimitExceeded",
        "RulesPerSecurityGroupLimitExceeded",
        "VolumeLimitExceeded",
        "LimitExceeded",  # IAM: roles, instance profiles
        "LimitExceededException",
    }),
    FailureClass.PERMISSION: frozenset({
        "UnauthorizedOperation",
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "OptInRequired",
    }),
}  # fmt: skip

_CODE = re.compile(r"\b([A-Z][A-Za-z]+(?:\.[A-Za-z]+)?)\b")
_BY_CODE = {code: cls for cls, codes in CODES.items() for code in codes}


def classify(error: BaseException | str) -> tuple[FailureClass, str | None]:
    """The class of a provisioning error and the AWS error code that decided it (None:
    no known code in it, class ``other``). The first known code in the text wins."""
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    if code in _BY_CODE:
        return _BY_CODE[code], code
    for match in _CODE.finditer(str(error)):
        word = match.group(1)
        if word in _BY_CODE:
            return _BY_CODE[word], word
    if "not authorized to perform" in str(error):
        return FailureClass.PERMISSION, None
    return FailureClass.OTHER, None


class ProvisioningError(ComputeError):
    """A start that failed, with its class in its one line: ``no capacity (capacity,
    InsufficientInstanceCapacity): creating stack …`` or ``provisioning failed (permission,
    UnauthorizedOperation): …``."""

    def __init__(self, message: str, failure: FailureClass, code: str | None) -> None:
        self.failure = failure
        self.code = code
        head = NO_CAPACITY_PREFIX if failure.is_no_capacity else "provisioning failed"
        why = failure.value + (f", {code}" if code else "")
        super().__init__(f"{head} ({why}): {message}")

    @classmethod
    def of(cls, exc: ComputeError) -> ComputeError:
        """``exc`` with its class in its line (its job indices kept); ``exc`` itself when it
        is classified already or of class ``other`` (its line says enough)."""
        if isinstance(exc, ProvisioningError):
            return exc
        failure, code = classify(exc.__cause__) if exc.__cause__ else (FailureClass.OTHER, None)
        if failure is FailureClass.OTHER:
            failure, code = classify(exc)
        if failure is FailureClass.OTHER:
            return exc
        classified = cls(str(exc), failure, code)
        classified.job_indices = exc.job_indices
        return classified
