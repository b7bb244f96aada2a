# Two commands for a newcomer: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENDOR := app/static/vendor

.PHONY: run test setup migrate bench screenshots clean

run: migrate
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# Three workers: most tests wait on servers, browsers and sockets rather than the CPU (1155 tests in 8½ minutes on 2 cores;
# four were no faster for sure: 7:53 and 9:09 in two runs, against 8:22 and 9:09 with three, and load the two cores more).
# loadscope: each module runs on one worker, so a module's server, browser page and data are set up once.
test: $(VENV)/.dev $(VENDOR)/.installed tests/oidc/node_modules/.installed
	$(BIN)/python -m pytest -n 4 --dist loadscope

setup: $(VENV)/.run $(VENDOR)/.installed

migrate: setup
	$(BIN)/flask --app app db upgrade

bench: $(VENV)/.dev $(VENDOR)/.installed
	$(BIN)/python -m bench

# Screenshots of every page, both sizes and themes, into docs/screenshots/ (a browser and sshd, as the tests need).
screenshots: $(VENV)/.dev $(VENDOR)/.installed
	$(BIN)/python docs/screenshots/take.py

$(VENV)/.run: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.run requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The Makefile is a prerequisite too: a file added to the copy list reaches existing checkouts.
$(VENDOR)/.installed: package.json package-lock.json Makefile
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/htmx.org/dist/htmx.min.js \
	   node_modules/@xterm/xterm/lib/xterm.js node_modules/@xterm/xterm/css/xterm.css \
	   node_modules/@xterm/addon-fit/lib/addon-fit.js \
	   node_modules/asciinema-player/dist/bundle/asciinema-player.min.js \
	   node_modules/asciinema-player/dist/bundle/asciinema-player.css $(VENDOR)/
	touch $@

# The OpenID Provider that the single sign-on tests log in through (tests only; nothing of it is served).
# oidc-provider 8 runs on Node.js 18 and later (Debian bookworm's nodejs 18.19 will do); older ones fail obscurely.
tests/oidc/node_modules/.installed: tests/oidc/package.json tests/oidc/package-lock.json
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' || { \
	  echo "The tests' OpenID provider needs Node.js 18 or later; this machine has $$(node --version 2>&1)."; \
	  echo "On Debian 12 (bookworm) or later: apt-get install nodejs npm"; exit 1; }
	npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) node_modules $(VENDOR) tests/oidc/node_modules
