# syncfail2ban: build, install and remove it as a system service.
#
#   make                  build: npm ci (when node_modules is missing or stale), then tsc into dist/
#   sudo make install     install it (see scripts/install.sh for every step); on a host running
#                         systemd this also enables syncfail2ban.service (it does not start it)
#   sudo make uninstall   remove it again; /etc/syncfail2ban/config.cfg is kept
#   make deb              build the Debian package syncfail2ban_<version>_all.deb (dpkg-deb)
#   make test             the test suite (npm test)
#   make verify-units     check the systemd units with systemd-analyze, where it exists
#
# Variables (make install VAR=value ...):
#   DESTDIR       staged install into this directory (for packaging); no systemctl calls then
#   PREFIX        /usr/local; programs go to $(PREFIX)/bin, the code to $(PREFIX)/lib/syncfail2ban
#   CONFDIR       /etc/syncfail2ban (config.cfg and the syncfail2ban-client fail2ban calls)
#   FAIL2BAN_DIR  /etc/fail2ban (syncfail2ban.py, sync-action.conf, sync-filter.conf go into its action.d, filter.d)
#   UNITDIR       /etc/systemd/system
#   MANDIR        $(PREFIX)/share/man (the man pages go into its man5 and man8)
#   DOCDIR        $(PREFIX)/share/doc/syncfail2ban (README.md and docs/)
#   COMPLETIONDIR $(PREFIX)/share/bash-completion/completions (bash completion of the three programs)
#   NODE          the node the programs run with (default: the one in PATH, made absolute)
#   SYSTEMCTL     systemctl; empty: never call it
#   NO_BUILD=1    install dist/ as it is, without running the build first. The tests use it.
#   DEB_DIR       where make deb puts the package (default: this directory)

DESTDIR =
PREFIX = /usr/local
BINDIR = $(PREFIX)/bin
LIBDIR = $(PREFIX)/lib/syncfail2ban
CONFDIR = /etc/syncfail2ban
FAIL2BAN_DIR = /etc/fail2ban
UNITDIR = /etc/systemd/system
MANDIR = $(PREFIX)/share/man
DOCDIR = $(PREFIX)/share/doc/syncfail2ban
COMPLETIONDIR = $(PREFIX)/share/bash-completion/completions
DUMMY_LOG = /var/log/syncfail2ban-dummy.log
NODE = $(shell command -v node)
NPM = npm
SYSTEMCTL = systemctl
NO_BUILD =
DEB_DIR = .

export DESTDIR BINDIR LIBDIR CONFDIR FAIL2BAN_DIR UNITDIR MANDIR DOCDIR COMPLETIONDIR DUMMY_LOG NODE SYSTEMCTL DEB_DIR

SOURCES := $(shell find src agent broker cli test -name '*.ts' 2>/dev/null) tsconfig.json package.json

.PHONY: all build install uninstall deb test verify-units clean

all: build

build: dist/agent/main.js

node_modules/.package-lock.json: package-lock.json
	$(NPM) ci --no-audit --no-fund

dist/agent/main.js: node_modules/.package-lock.json $(SOURCES)
	$(NPM) run build --silent
	@touch $@

install: $(if $(NO_BUILD),,build)
	@sh scripts/install.sh

uninstall:
	@sh scripts/uninstall.sh

deb: $(if $(NO_BUILD),,build)
	@sh scripts/build-deb.sh

test:
	$(NPM) test

verify-units:
	@sh scripts/verify-units.sh

clean:
	rm -rf dist
