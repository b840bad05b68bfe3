# Load test (see docs/performance.md): Locust, one process per core, against `notifsvc dev`
# started here (or LOAD_HOST=http://127.0.0.1:PORT, an already running deployment, seen through
# its API only). Prints one summary; JSON and a PNG chart go to loadtest/results/.
#   LOAD_USERS=50 LOAD_SPAWN_RATE=10 LOAD_DURATION=60s LOAD_USER_RATE=20 (req/s per user, 0: unpaced)
#   LOAD_REPOST_SHARE=0.1 LOAD_MIX=log:1,webhook:1 LOAD_SINK_DELAY_MS=0 LOAD_DRAIN_TIMEOUT=180s
.PHONY: load-test

load-test: install
	$(BIN)/python -m loadtest.load
