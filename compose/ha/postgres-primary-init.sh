#!/bin/sh
# Runs once, when the primary's data directory is created (docker-entrypoint-initdb.d): a role
# for streaming replication, and pg_hba lines that let the standby connect with it.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '${REPLICATION_PASSWORD}';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
# Synchronous replication from the real start on (this init's server does not load it): a
# commit is acknowledged once the standby has it, so a promotion loses no acknowledged job.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "ALTER SYSTEM SET synchronous_standby_names = '*'"
