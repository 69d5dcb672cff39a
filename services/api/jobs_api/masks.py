"""UpdateJob's field mask (AIP-134): which fields of the request's job replace the stored ones."""

from __future__ import annotations

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["UPDATABLE_FIELDS", "apply_update_mask", "populated_leaf_paths"]

# Top-level Job fields a client may change; the rest are output only (or the id).
UPDATABLE_FIELDS = ("http_request", "timeout", "retry_policy", "schedule", "queue", "labels")
# Messages that are values, not records: a populated one is replaced whole.
_VALUE_MESSAGES = frozenset({"google.protobuf.Duration", "google.protobuf.Timestamp"})


def apply_update_mask(current: pb.Job, update: pb.Job, mask: FieldMask) -> pb.Job:
    """``current`` with the masked fields taken from ``update``.

    An empty mask means every populated *leaf* field of ``update`` under an updatable field
    (AIP-134's implied mask): a partly set message changes only what it sets, never erasing its
    siblings. ``*`` means all updatable fields (unset ones are cleared to their defaults). Masked
    message fields, maps and repeated fields are replaced whole.

    Raises:
        InvalidArgumentError: a path that names no field, or an output-only one.
    """
    paths = list(mask.paths)
    if not paths:
        paths = [path for path in populated_leaf_paths(update) if path.split(".", 1)[0] in UPDATABLE_FIELDS]
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


def populated_leaf_paths(message: Message, prefix: str = "") -> list[str]:
    """The paths of the fields set in ``message``, descending into set sub-messages: scalars,
    repeated fields, maps, durations and timestamps are leaves. A set but empty sub-message has
    no leaves, so it changes nothing."""
    paths = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        kind = field.message_type
        if kind is not None and not field.is_repeated and kind.full_name not in _VALUE_MESSAGES:
            paths += populated_leaf_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths
