#!/bin/sh
# One Sentinel: it rewrites its configuration as it learns, so it gets a writable copy.
set -eu
config=/tmp/sentinel.conf
cat > "$config" <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel monitor ${SENTINEL_MASTER} redis-primary 6379 2
sentinel auth-pass ${SENTINEL_MASTER} ${REDIS_PASSWORD}
sentinel down-after-milliseconds ${SENTINEL_MASTER} 5000
sentinel failover-timeout ${SENTINEL_MASTER} 30000
sentinel parallel-syncs ${SENTINEL_MASTER} 1
requirepass ${SENTINEL_PASSWORD}
CONF
exec redis-server "$config" --sentinel
