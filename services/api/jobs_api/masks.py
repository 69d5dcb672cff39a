"""UpdateJob's field mask (AIP-134): which fields of the request's job replace the stored ones."""

from __future__ import annotations

from google.protobuf.field_mask_pb2 import FieldMask

from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["UPDATABLE_FIELDS", "apply_update_mask"]

# Top-level Job fields a client may change; the rest are output only (or the id).
UPDATABLE_FIELDS = ("http_request", "timeout", "retry_policy", "schedule", "queue", "labels")


def apply_update_mask(current: pb.Job, update: pb.Job, mask: FieldMask) -> pb.Job:
    """``current`` with the masked fields taken from ``update``.

    An empty mask means every updatable field set in ``update``; ``*`` means all of them (unset
    ones are cleared to their defaults). Masked message fields and maps are replaced whole.

    Raises:
        InvalidArgumentError: a path that names no field, or an output-only one.
    """
    paths = list(mask.paths)
    if not paths:
        paths = [f.name for f, _ in update.ListFields() if f.name in UPDATABLE_FIELDS]
    elif paths == ["*"]:
        paths = list(UPDATABLE_FIELDS)
    violations = []
    for path in paths:
        if path.split(".", 1)[0] not in UPDATABLE_FIELDS:
            violations.append(
                FieldViolation("update_mask", f"{path!r} cannot be updated (one of {', '.join(UPDATABLE_FIELDS)})")
            )
        elif not FieldMask(paths=[path]).IsValidForDescriptor(pb.Job.DESCRIPTOR):
            violations.append(FieldViolation("update_mask", f"{path!r} names no field of Job"))
    if violations:
        raise InvalidArgumentError(violations)
    merged = pb.Job()
    merged.CopyFrom(current)
    FieldMask(paths=paths).MergeMessage(update, merged, replace_message_field=True, replace_repeated_field=True)
    return merged
