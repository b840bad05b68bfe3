# Benchmarks (see docs/performance.md). Each starts its own broker and database
# (`notifsvc dev --infra-only`), measures, prints a table and writes loadtest/results/bench-*.json.
#   make bench-receiver     BENCH_WORKERS=1 BENCH_USERS=32 BENCH_SECONDS=15 BENCH_ROUNDS=2 BENCH_PARTITIONS=2
#   make bench-router       BENCH_COUNT=200000 BENCH_BASELINE_COUNT=5000 BENCH_BASELINE_SECONDS=30
#   make bench-notificator  BENCH_NOTIFY_COUNT=20000 NOTIFSVC_SEND_CONCURRENCY=64 BENCH_SINK_DELAY_MS=10
#   make bench-cost         BENCH_COST_ARGS="--rounds 3 --scale 2" (CPU per notification per
#                           process, broker and PostgreSQL; bare-endpoint and Go-pattern baselines;
#                           --statements: PostgreSQL time per statement; --perf: the receiver's
#                           and bare endpoint's CPU by thread and library, needs perf)
#   make bench-replay       BENCH_REPLAY_ARGS="--failed 20000 --fresh-rate 50" (a replay of failed
#                           webhooks against fresh traffic: replay rate, fresh p50/p99 beside it)
#   make bench              all three plus BENCH_SCALE=10000,100000,1000000 (drain rate and router
#                           RSS per backlog size), as one table
.PHONY: bench bench-receiver bench-router bench-notificator bench-cost bench-replay

bench: install
	$(BIN)/python -m loadtest.bench all

bench-receiver: install
	$(BIN)/python -m loadtest.bench receiver

bench-router: install
	$(BIN)/python -m loadtest.bench router

bench-notificator: install
	$(BIN)/python -m loadtest.bench notificator

bench-cost: install
	$(BIN)/python -m loadtest.bench_cost $(BENCH_COST_ARGS)

bench-replay: install
	$(BIN)/python -m loadtest.bench_replay $(BENCH_REPLAY_ARGS)

# PostgreSQL's CPU per notification for the store's writes of a delivery, alone (no broker, no
# stages): BENCH_STORE_ARGS="--batch 100 --variant some.sql" compares a schema change.
.PHONY: bench-store
bench-store: install
	$(BIN)/python -m loadtest.bench_store $(BENCH_STORE_ARGS)

# Retention: rows per second one router replica deletes from a backlog, and CPU per deleted
# row of PostgreSQL and of the duty (BENCH_RETENTION_ARGS="--rows 1000000 --rounds 3").
.PHONY: bench-retention
bench-retention: install
	$(BIN)/python -m loadtest.bench_retention $(BENCH_RETENTION_ARGS)

# Lateness of scheduled sends: 1,000 notifications due over a minute through the delay tiers
# (p50/p99 of arrival - send_at at a webhook sink; BENCH_SCHEDULE_ARGS="--count 1000 --spread 60").
.PHONY: bench-schedule
bench-schedule: install
	$(BIN)/python -m loadtest.bench_schedule $(BENCH_SCHEDULE_ARGS)

# make bench-rates   BENCH_RATES_ARGS="--rate 50 --seconds 20 --key-rate 100 --offer 300"
# (two notificators sharing NOTIFSVC_SEND_RATE, then one killed; two receivers sharing
# NOTIFSVC_RATE_LIMIT_PER_KEY; see loadtest/bench_rates.py)
.PHONY: bench-rates
bench-rates: install
	$(BIN)/python -m loadtest.bench_rates $(BENCH_RATES_ARGS)
