#!/usr/bin/env bash
# The benchmark of issue 7, in one run on one machine: builds the release binaries, then measures
#   1. pgbench TPC-B (scale TPCB_SCALE) on a scratch database,
#   2. pgbench with the service's own create-order statement (bench/allocation.sql) on a database
#      migrated by `solopay migrate`: one payee with the same amount, and 16 payees with many
#      amounts, each repetition on fresh payees and filled exactly as far as the HTTP runs fill
#      theirs (the median of REPS repetitions is reported),
#   3. the service through HTTP (solopay-bench, which starts its own service and database):
#      the native API, then the old protocols (V免签, 易支付 V1) on another service of its own,
# and prints the three side by side with the ratios. Extra arguments go to solopay-bench
# (`--phases native` leaves the old protocols out; `--phases history` measures a year of history
# on a PostgreSQL cluster the bench starts itself: see the README's "History at scale").
#
#   bench/run.sh                       # everything: 5 to 10 minutes on 2 cores
#   CLIENTS=32 REPS=3 bench/run.sh --report bench/report.json
#
# Needs PostgreSQL at PGHOST:PGPORT (default 127.0.0.1:5432) with a role that may create
# databases (PGUSER, default root), and pgbench and psql.
set -euo pipefail

cd "$(dirname "$0")/.."
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-root}
CLIENTS=${CLIENTS:-32}
THREADS=${THREADS:-2}
TPCB_SCALE=${TPCB_SCALE:-32}
TPCB_SECONDS=${TPCB_SECONDS:-30}
REPS=${REPS:-3}
# As many orders per repetition as solopay-bench's runs create (its defaults): a payee holds
# 1,000 reserved orders of one amount with SOLOPAY_MAX_OFFSET_STEPS=999.
ONE_PAYEE_ORDERS=${ONE_PAYEE_ORDERS:-1000}
SPREAD_ORDERS=${SPREAD_ORDERS:-2000}
# Absolute: solopay-bench starts the service from a folder of its own.
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")

COMMAND="CLIENTS=$CLIENTS THREADS=$THREADS TPCB_SCALE=$TPCB_SCALE TPCB_SECONDS=$TPCB_SECONDS REPS=$REPS $0 $*"
echo "command: $COMMAND"
echo "PostgreSQL: $(psql -At -d postgres -c "SELECT current_setting('server_version') || ', autovacuum ' || current_setting('autovacuum')")"
SOURCE="$(git rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')"
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then SOURCE="$SOURCE with uncommitted changes"; fi
echo "source: $SOURCE"
started=$(date +%s)

cargo build --release --bin solopay --bin solopay-bench
SOLOPAY="$TARGET_DIR/release/solopay"
BENCH="$TARGET_DIR/release/solopay-bench"

suffix=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
TPCB_DB="solopay_bench_tpcb_$suffix"
ALLOC_DB="solopay_bench_sql_$suffix"
LOGS=$(mktemp -d)
cleanup() {
    for db in "$TPCB_DB" "$ALLOC_DB"; do
        psql -q -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# The tps pgbench printed ("tps = 532.123 (without initial connection time)").
tps_of() { awk '/^tps = / { print $3; exit }' "$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo
echo "== pgbench TPC-B: scale $TPCB_SCALE, $CLIENTS clients, ${TPCB_SECONDS} s"
createdb "$TPCB_DB"
pgbench -i -q -s "$TPCB_SCALE" "$TPCB_DB" >"$LOGS/tpcb-init.log" 2>&1
# -P: its progress every 10 s shows here as well as in the log.
pgbench -M prepared -P 10 -c "$CLIENTS" -j "$THREADS" -T "$TPCB_SECONDS" "$TPCB_DB" 2>&1 \
    | tee "$LOGS/tpcb.log" | { grep --line-buffered '^progress' || true; }
TPCB_TPS=$(tps_of "$LOGS/tpcb.log")
echo "TPC-B: $TPCB_TPS tps"
psql -q -d postgres -c "DROP DATABASE \"$TPCB_DB\" WITH (FORCE)"

echo
echo "== pgbench of the service's allocation SQL (bench/allocation.sql), $CLIENTS clients"
DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$ALLOC_DB" SOLOPAY_LOG=warn "$SOLOPAY" migrate
psql -q -v ON_ERROR_STOP=1 -d "$ALLOC_DB" -c "
    INSERT INTO merchants (id, name, api_key_hash, webhook_secret, md5_key)
    VALUES ('mch_pgbench', 'pgbench', sha256('pgbench'), 'whsec_unused', 'unused');"

# fresh_payees <run> <count> <channel>: disables every device, then adds <count> devices with one
# payee each. Their last_seen_at lies in the future, so they stay online without heartbeats.
# VACUUM ANALYZE does what autovacuum would between runs (this server may have it off), as
# solopay-bench does before each of its runs.
fresh_payees() {
    psql -q -v ON_ERROR_STOP=1 -d "$ALLOC_DB" -c "
        UPDATE devices SET enabled = false;
        INSERT INTO devices (id, name, secret, last_seen_at)
        SELECT 'dev_$1_' || i, 'pgbench', 'unused', now() + interval '1 day'
          FROM generate_series(1, $2) i;
        INSERT INTO payees (id, channel, name, qr_code, device_id)
        SELECT 'pye_$1_' || i, '$3', 'pgbench', 'qr', 'dev_$1_' || i
          FROM generate_series(1, $2) i;"
    psql -q -d "$ALLOC_DB" -c "VACUUM ANALYZE"
}

# allocation_run <run> <payees> <channel> <min cents> <max cents> <orders>: one repetition;
# prints its tps, and fails unless every transaction created an order.
allocation_run() {
    local run=$1 payees=$2 channel=$3 min=$4 max=$5 orders=$6
    local per_client=$((orders / CLIENTS))
    fresh_payees "$run" "$payees" "$channel"
    pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -t "$per_client" -f bench/allocation.sql \
        -D merchant=mch_pgbench -D channel="$channel" -D min_cents="$min" -D max_cents="$max" \
        "$ALLOC_DB" >"$LOGS/$run.log" 2>&1
    local created
    created=$(psql -At -d "$ALLOC_DB" -c "SELECT count(*) FROM orders WHERE payee_id LIKE 'pye\_${run}\_%'")
    if [ "$created" -ne $((per_client * CLIENTS)) ]; then
        echo "pgbench run $run created $created orders, expected $((per_client * CLIENTS)); see $LOGS/$run.log" >&2
        exit 1
    fi
    tps_of "$LOGS/$run.log"
}

one=()
spread=()
for rep in $(seq 1 "$REPS"); do
    echo "repetition $rep/$REPS ..."
    one+=("$(allocation_run "one$rep" 1 alipay 1000 1000 "$ONE_PAYEE_ORDERS")")
    spread+=("$(allocation_run "spread$rep" 16 wechat 100 99999 "$SPREAD_ORDERS")")
done
ALLOC_TPS=$(median "${one[@]}")
ALLOC_SPREAD_TPS=$(median "${spread[@]}")
echo "one payee, same amount:  ${one[*]} tps -> median $ALLOC_TPS"
echo "16 payees, many amounts: ${spread[*]} tps -> median $ALLOC_SPREAD_TPS"
violations=$(psql -At -d "$ALLOC_DB" -c "
    SELECT count(*) FROM orders a JOIN orders b
        ON a.payee_id = b.payee_id AND a.payable_amount = b.payable_amount AND a.id < b.id
       AND tstzrange(a.created_at, a.reserved_until) && tstzrange(b.created_at, b.reserved_until)")
echo "invariant violations in the pgbench database: $violations"
psql -q -d postgres -c "DROP DATABASE \"$ALLOC_DB\" WITH (FORCE)"

echo
echo "== the service through HTTP (solopay-bench)"
"$BENCH" --solopay "$SOLOPAY" \
    --pgbench-clients "$CLIENTS" \
    --source "$SOURCE" \
    --pgbench-tpcb-tps "$TPCB_TPS" \
    --pgbench-allocation-tps "$ALLOC_TPS" \
    --pgbench-allocation-spread-tps "$ALLOC_SPREAD_TPS" \
    --one-payee-orders "$ONE_PAYEE_ORDERS" \
    --spread-orders "$SPREAD_ORDERS" \
    "$@"

echo
echo "pgbench logs: $LOGS"
echo "finished in $(( $(date +%s) - started )) s; produced by: $COMMAND"
