#!/bin/sh
# The standby: on first start, a base backup of the primary with -R (standby.signal and
# primary_conninfo); then PostgreSQL runs as a hot standby streaming from it. Promote it with
# `docker compose -f compose/docker-compose.ha.yml exec -u postgres postgres-standby pg_ctl promote`
# (a failover manager such as Patroni does this on its own).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h postgres-primary -p 5432 -q; do sleep 1; done
  PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup -h postgres-primary -p 5432 -U replicator \
    -D "$PGDATA" -R -X stream -c fast
  # The copy has the primary's synchronous_standby_names; promoted, this one has no standby to
  # wait for, so it must not (its commits would hang).
  echo "synchronous_standby_names = ''" >> "$PGDATA/postgresql.auto.conf"
  chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on
