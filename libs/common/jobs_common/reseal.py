"""``python -m jobs_common.reseal``: seals every job's and execution's secrets with the current
key (the first of SECRETS_KEYS). Run it after putting a new key first, then drop the old key.
It also moves always-secret headers stored in clear before sealing existed (Authorization...)
under the key, and turns ``v1:`` values (bound to their key only) into ``v2:`` ones bound to
their job: a ``v1:`` value is bound to the job whose row holds it when the reseal runs. Safe to
run while the service runs, and again: a row changed meanwhile is left for the next run (the
update is conditional on what was read)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobs_common.domain import DEFAULT_SECRET_HEADERS
from jobs_common.secrets import SealedSecrets, SecretBox, SecretsError, job_secrets_binding
from jobs_common.settings import Settings

__all__ = ["ResealReport", "reseal"]

logger = logging.getLogger(__name__)
_BATCH = 500


@dataclass
class ResealReport:
    checked: int = 0
    resealed: int = 0
    changed_meanwhile: int = 0
    # Sealed with a key SECRETS_KEYS no longer lists: left as they are, named in the log.
    unopenable: int = 0


async def reseal(engine: AsyncEngine, box: SecretBox) -> ResealReport:
    report = ResealReport()
    for table in ("jobs", "executions"):
        after = None
        while True:
            async with engine.begin() as conn:
                rows = (await conn.execute(_select(table), {"after": after, "n": _BATCH})).all()
                for row in rows:
                    report.checked += 1
                    try:
                        resealed = _resealed(row.headers, row.sealed_secrets, box, job_secrets_binding(row.job_id))
                    except SecretsError as exc:
                        logger.error("%s %s: %s", table, row.id, exc)
                        report.unopenable += 1
                        continue
                    if resealed is None:
                        continue
                    headers, sealed = resealed
                    done = await conn.execute(
                        _update(table),
                        {
                            "id": row.id,
                            "headers": json.dumps(headers),
                            "sealed": sealed,
                            "old_headers": json.dumps(row.headers),
                            "old_sealed": row.sealed_secrets,
                        },
                    )
                    if done.rowcount:
                        report.resealed += 1
                    else:
                        report.changed_meanwhile += 1
            if len(rows) < _BATCH:
                break
            after = rows[-1].id
    return report


def _select(table: str) -> TextClause:
    job_id = "id" if table == "jobs" else "job_id"
    return text(
        f"SELECT id, {job_id} AS job_id, headers, sealed_secrets FROM {table} "
        "WHERE (CAST(:after AS uuid) IS NULL OR id > :after) ORDER BY id LIMIT :n"
    )


def _update(table: str) -> TextClause:
    """Only if the row is still what was read (UpdateJob may have rewritten it meanwhile)."""
    return text(
        f"UPDATE {table} SET headers = CAST(:headers AS jsonb), sealed_secrets = :sealed "
        "WHERE id = :id AND headers = CAST(:old_headers AS jsonb) AND sealed_secrets IS NOT DISTINCT FROM :old_sealed"
    )


def _resealed(
    headers: dict[str, str], sealed: str | None, box: SecretBox, bound_to: str
) -> tuple[dict[str, str], str | None] | None:
    """The row's headers and sealed secrets as ``box`` writes them now; None if already so."""
    in_clear = {name: value for name, value in headers.items() if name.lower() in DEFAULT_SECRET_HEADERS}
    if not in_clear and not box.needs_resealing(sealed):
        return None
    opened = box.open(sealed, bound_to)
    kept = {name: value for name, value in headers.items() if name not in in_clear}
    return kept, box.seal(SealedSecrets({**opened.headers, **in_clear}, opened.signing_secrets), bound_to)


async def _main() -> None:
    settings = Settings()
    box = settings.secret_box
    if box.current_key_id is None:
        raise SystemExit("SECRETS_KEYS is empty: there is no key to seal with")
    engine = create_async_engine(settings.database_url)
    try:
        report = await reseal(engine, box)
    finally:
        await engine.dispose()
    logger.info(
        "resealed %d of %d rows with key %r; %d changed meanwhile (run again), %d sealed with an unlisted key",
        report.resealed,
        report.checked,
        box.current_key_id,
        report.changed_meanwhile,
        report.unopenable,
    )
    if report.unopenable:
        raise SystemExit(1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_main())
