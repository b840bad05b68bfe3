# The console's browser test (integration/test_console.py) drives Debian's Chromium through
# Playwright for Python (the `playwright` wheel of the test extra; no browser download). This
# installs the chromium package when it is missing and this is root on a system with apt; it
# never fails the build: without a Chromium the test is skipped, saying so.
.PHONY: browser

browser:  ## Debian's chromium for the console's browser test, where it can be installed
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the console's browser test"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
		|| echo "could not install chromium: the console's browser test will be skipped" >&2; \
	else \
		echo "no chromium (apt-get install chromium as root): the console's browser test will be skipped" >&2; \
	fi

test integration: browser
