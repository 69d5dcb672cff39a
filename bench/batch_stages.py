"""``python -m bench.batch_stages``: what each of the api's own stages of a BatchCreateJobs of
1,000 jobs costs, in this process (no gRPC, no PostgreSQL, no Redis): checking the requests,
making the new jobs' columns, their rows as JSON for the statement, and the answer. Each stage's
best of ``--repeat`` runs, in microseconds per job; the JSON's bytes per job.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from jobs_api import convert
from jobs_api.job_service import JobServicer
from jobs_api.signing_secrets import generated_secrets
from jobs_api.validation import JobLimits
from jobs_common.settings import Settings
from jobs_common.store._jobs import JobStore, _first_execution, _new_job_row
from jobs_common.store._json_rows import json_rows
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=25)
    args = parser.parse_args()
    settings = Settings(environment="development", egress_allow_networks="127.0.0.0/8")
    servicer = JobServicer.__new__(JobServicer)  # only its checks are used: no store, no dispatcher
    servicer._limits = JobLimits.from_settings(settings)
    store = JobStore.__new__(JobStore)  # only its making of new jobs is used: no engine
    store._box = settings.secret_box
    job = pb.Job(http_request=pb.HttpRequest(url="http://127.0.0.1:9/hit"), labels={"bench": "stages"})  # make bench's
    request = api.BatchCreateJobsRequest(requests=[api.CreateJobRequest(job=job)] * args.jobs)

    def check() -> list[object]:
        return [servicer._checked(item, f"requests[{i}].") for i, item in enumerate(request.requests)]

    checked = [servicer._checked(item) for item in request.requests]
    news = [store._new_job("default", spec, key, None) for spec, key in checked]

    def columns() -> list[object]:
        return [store._new_job("default", spec, key, None) for spec, key in checked]

    def rows() -> tuple[str, str]:
        return json_rows(_new_job_row(new) for new in news), json_rows(_first_execution(new) for new in news)

    def answer() -> api.BatchCreateJobsResponse:
        return api.BatchCreateJobsResponse(
            jobs=[
                convert.job_to_proto(
                    new.job,
                    shown_secrets=generated_secrets(new.job.spec.http_request, item.job.http_request.signing.secrets),
                )
                for new, item in zip(news, request.requests, strict=True)
            ]
        )

    stages: dict[str, Callable[[], object]] = {
        "check the requests": check,
        "the new jobs' columns": columns,
        "their rows as JSON": rows,
        "the answer": answer,
    }
    total = 0.0
    for name, stage in stages.items():
        seconds = min(timeit.repeat(stage, number=1, repeat=args.repeat)) / args.jobs
        total += seconds
        print(f"{name:24s} {seconds * 1e6:7.1f} us a job")
    print(f"{'in all':24s} {total * 1e6:7.1f} us a job")
    jobs_json, executions_json = rows()
    print(f"JSON: jobs {len(jobs_json) / args.jobs:.0f} bytes a job, executions {len(executions_json) / args.jobs:.0f}")


if __name__ == "__main__":
    main()
