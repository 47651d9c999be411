#!/bin/sh
# labbot's container entrypoint: optionally wait for the database and apply migrations, then exec labbot.
#
#   LABBOT_MIGRATE=1          run `labbot db upgrade` first (one service does this; replicas wait for it)
#   LABBOT_DB_WAIT_SECONDS    how long to wait for the database to answer (default 60)
#   LABBOT_BIN                the labbot executable (default: labbot on PATH)
#
# Arguments are labbot's: `run --host 0.0.0.0`, `worker`, `sim zstack ...`, `sweep --dry-run` ...
set -eu

labbot=${LABBOT_BIN:-labbot}
wait_seconds=${LABBOT_DB_WAIT_SECONDS:-60}
case $wait_seconds in
    ''|*[!0-9]*) echo "labbot entrypoint: LABBOT_DB_WAIT_SECONDS must be a number of seconds" >&2; exit 2 ;;
esac

if [ "${LABBOT_MIGRATE:-0}" = 1 ]; then
    waited=0
    # `db current` connects and reads the revision: it succeeds once the database accepts us.
    until "$labbot" db current >/dev/null 2>&1; do
        if [ "$waited" -ge "$wait_seconds" ]; then
            # The last line of the last attempt says why (refused, unknown host, authentication failed ...).
            reason=$("$labbot" db current 2>&1 | tail -n 1) || true
            echo "labbot entrypoint: the database did not answer within ${wait_seconds}s: $reason" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    "$labbot" db upgrade
fi

exec "$labbot" "$@"
