"""The role each method needs. Every method of JobService and QueueService is listed (a test holds
the list to the services' descriptors); a method of theirs that is not listed needs ``admin``."""

from __future__ import annotations

from jobs_common.auth import Role

__all__ = ["SCOPED_SERVICES", "required_role"]

_JOBS = "jobscheduler.v1.JobService"
_QUEUES = "jobscheduler.v1.QueueService"
SCOPED_SERVICES = (_JOBS, _QUEUES)

_READ = ("GetJob", "ListJobs", "GetExecution", "ListExecutions", "WatchJob")
_WRITE = (
    "CreateJob",
    "BatchCreateJobs",
    "UpdateJob",
    "PauseJob",
    "ResumeJob",
    "RunJob",
    "DeleteJob",
    "CancelExecution",
    "ReplayExecution",
)
_QUEUE_READ = ("ListQueues", "GetQueue", "GetQueueStats", "ListWorkers", "GetScalingRecommendation", "ListDeadLetters")
_QUEUE_ADMIN = ("PauseQueue", "ResumeQueue", "UpdateQueue", "ReplayDeadLetters", "PurgeDeadLetters")

ROLES: dict[tuple[str, str], Role] = {
    **{(_JOBS, method): Role.READER for method in _READ},
    **{(_JOBS, method): Role.WRITER for method in _WRITE},
    **{(_QUEUES, method): Role.READER for method in _QUEUE_READ},
    **{(_QUEUES, method): Role.ADMIN for method in _QUEUE_ADMIN},
}


def required_role(service: str, method: str) -> Role:
    """The role a call of ``service``/``method`` needs: reader for anything outside the scoped
    services (KEDA's scaler, reflection, when they are not open), admin for an unlisted method
    of theirs (fail closed)."""
    if service not in SCOPED_SERVICES:
        return Role.READER
    return ROLES.get((service, method), Role.ADMIN)
