# Fault injection (see docs/chaos.md). Each run starts its own broker and database inside the
# harness process and runs the stages as processes; it prints one row per scenario and fails
# if any notification that got a 202 was not delivered.
#   make chaos                 every scenario, full length (10 kills, 20 s database outage, ...)
#   make chaos-short           the shortened set that integration/test_chaos.py runs in CI
#   make chaos CHAOS_ARGS='router-kill --serial --seed 7'   a subset, one at a time, fixed timing
CHAOS_ARGS ?=
.PHONY: chaos chaos-short

chaos: install  ## kill, starve and poison the pipeline; nothing accepted may be lost
	$(BIN)/python -m loadtest.chaos $(CHAOS_ARGS)

chaos-short: install  ## the same scenarios, shortened (what CI runs)
	$(BIN)/python -m loadtest.chaos --short $(CHAOS_ARGS)
