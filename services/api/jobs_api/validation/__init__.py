"""Request validation: every check of what a client sends, before anything is stored.

* :mod:`._deduplication` — a CreateJob's de-duplication (:func:`validate_deduplication`);
* :mod:`._fields` — resource ids, request ids, page sizes, queue names;
* :mod:`._jobs` — a whole job (:func:`validate_job`), within :class:`JobLimits`;
* :mod:`._queues` — an UpdateQueue (:func:`validate_queue_update`);
* :mod:`._urls` — a job's URL, and the addresses the egress policy can never allow.
"""

from jobs_api.validation._deduplication import validate_deduplication
from jobs_api.validation._fields import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    validate_id,
    validate_page_size,
    validate_queue_name,
    validate_request_id,
)
from jobs_api.validation._jobs import validate_job
from jobs_api.validation._limits import JobLimits
from jobs_api.validation._queues import validate_queue_update

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "JobLimits",
    "validate_deduplication",
    "validate_id",
    "validate_job",
    "validate_page_size",
    "validate_queue_name",
    "validate_queue_update",
    "validate_request_id",
]
