"""UpdateJob's field mask (AIP-134) as the domain patch's paths: which fields of the request's job
replace the stored ones. The merge itself is :func:`jobs_common.domain.apply_patch`."""

from __future__ import annotations

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from jobs_common.domain import UPDATABLE_FIELDS
from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["populated_leaf_paths", "update_paths"]

# Messages that are values, not records: a populated one is replaced whole.
_VALUE_MESSAGES = frozenset({"google.protobuf.Duration", "google.protobuf.Timestamp"})
# body_text arrives as body (the edge folds it), so a mask naming it names body.
_FOLDED_PATHS = {"http_request.body_text": "http_request.body"}


def update_paths(update: pb.Job, mask: FieldMask) -> list[str]:
    """The paths of ``update`` that replace stored fields.

    An empty mask means every populated *leaf* field of ``update`` under an updatable field
    (AIP-134's implied mask): a partly set message changes only what it sets, never erasing its
    siblings. ``*`` means all updatable fields (unset ones are cleared to their defaults). A
    path below a message the request leaves unset changes nothing, as protobuf's own merge does.

    Raises:
        InvalidArgumentError: a path that names no field, or an output-only one.
    """
    paths = [_FOLDED_PATHS.get(path, path) for path in mask.paths]
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
    return [path for path in paths if _parents_set(update, path)]


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


def _parents_set(message: Message, path: str) -> bool:
    for name in path.split(".")[:-1]:
        if not message.HasField(name):
            return False
        message = getattr(message, name)
    return True
