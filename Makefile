# mini-buildd: developer entry points. See README.md.
#   make run    install what is needed, bootstrap a local instance, run the daemon in the foreground
#   make lint   static checks: pylint, flake8, mypy (configuration: .pylintrc, .flake8, mypy.ini)
#   make check  install what is needed and run the static checks and the whole test suite
#   make deb    build the Debian packages (into ..)

PYTHON := /usr/bin/python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RUN_HOME ?= $(CURDIR)/.run-home
RUN_PORT ?= 8066
RUN_USER := $(shell id -un)
HOST_CODENAME := $(shell . /etc/os-release && echo $$VERSION_CODENAME)
HOST_ARCH := $(shell dpkg --print-architecture)
RUN_HOSTNAME ?= $(shell hostname -f 2>/dev/null || hostname)
# First start: the host's codename and native architecture, archives from the host's apt
# sources, repository 'test' (Default layout, anonymous uploads), a Dir chroot.
BOOTSTRAP := --archives-from-apt-sources --sources $(HOST_CODENAME) --distributions $(HOST_CODENAME):$(HOST_ARCH) \
	--repositories test:Default:$(HOST_CODENAME) --chroots $(HOST_CODENAME):$(HOST_ARCH) --update all --pca all

# Debian packages the daemon needs at run time.
RUN_DEPS := python3-django python3-twisted python3-pyftpdlib python3-gnupg python3-debian python3-requests \
	python3-keyring python3-openssl python3-service-identity python3-distro-info distro-info-data python3-yaml \
	sbuild schroot reprepro debootstrap gnupg gpgv dput devscripts dpkg-dev arch-test ca-certificates openssl curl debmirror sudo dose-distcheck \
	mmdebstrap uidmap
# ... and what the tests and the package build need on top.
TEST_DEPS := python3-pytest python3-pytest-django debhelper dh-python python3-all python3-setuptools tidy procps man-db \
	chromium chromium-driver python3-selenium python3-sphinx systemd-container debconf-utils lintian shellcheck \
	pylint python3-pylint-django flake8 mypy btrfs-progs \
	piuparts autopkgtest qemu-user-static binfmt-support python3-prometheus-client nginx-light
# ... and what the benchmarks (bench/) use on top.
BENCH_DEPS := wrk apache2-utils nginx-light

.PHONY: deps test-deps bench-deps run lint check unit integration e2e browser deb doc manual clean

deps:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(RUN_DEPS) >/dev/null

test-deps: deps
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEST_DEPS) >/dev/null
	@# Foreign architectures (arm64 tests) run through qemu-user-static's binfmt handlers: the kernel's
	@# binfmt_misc must be mounted for them (tests skip with the reason where arch-test says no).
	@[ -e /proc/sys/fs/binfmt_misc/register ] || $(SUDO) mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
	@$(SUDO) update-binfmts --enable >/dev/null 2>&1 || true

bench-deps: test-deps
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_DEPS) >/dev/null

run: deps
	@mkdir -p -m 0700 $(RUN_HOME)
	@[ -s $(RUN_HOME)/admin-password ] || (umask 077; $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(12))' > $(RUN_HOME)/admin-password)
	@chmod 0600 $(RUN_HOME)/admin-password
	@$(PYTHON) -m mini_buildd --home $(RUN_HOME) --dedicated-user $(RUN_USER) --set-admin-password-file - < $(RUN_HOME)/admin-password
	@[ -e $(RUN_HOME)/.bootstrapped ] || { echo "Bootstrapping $(HOST_CODENAME)/$(HOST_ARCH) (first start: debootstrap takes a few minutes)..."; \
	  MINI_BUILDD_DEBOOTSTRAP_CACHE=1 $(PYTHON) -m mini_buildd.cli.setup --home $(RUN_HOME) --dedicated-user $(RUN_USER) --hostname $(RUN_HOSTNAME) \
	    --http-endpoint tcp6:port=$(RUN_PORT) $(BOOTSTRAP) && touch $(RUN_HOME)/.bootstrapped; }
	@echo "mini-buildd: http://$(RUN_HOSTNAME):$(RUN_PORT)/  (user admin, password in $(RUN_HOME)/admin-password); stop with Ctrl-C"
	$(PYTHON) -m mini_buildd --home $(RUN_HOME) --dedicated-user $(RUN_USER) --hostname $(RUN_HOSTNAME) --http-endpoint tcp6:port=$(RUN_PORT)

# Static checks (configuration: .pylintrc, .flake8, mypy.ini); make check runs them first.
LINT_PATHS := mini_buildd tests bench

lint:
	PYTHONPATH=$(CURDIR) $(PYTHON) -m pylint $(LINT_PATHS)
	$(PYTHON) -m flake8 $(LINT_PATHS)
	$(PYTHON) -m mypy

check: test-deps lint
	$(PYTHON) tests/run_suite.py

unit:
	$(PYTHON) -m pytest -q tests/unit

integration:
	$(PYTHON) -m pytest -q tests/integration

e2e:
	$(PYTHON) -m pytest -q tests/e2e

browser:
	$(PYTHON) -m pytest -q tests/browser

# Regenerate the API reference from the call registry.
doc:
	$(PYTHON) -m mini_buildd.manpages --markdown doc/api.md

# The HTML manual (doc/manual, Sphinx) into build/manual/html; the daemon serves it at /mini_buildd/manual/.
manual:
	$(PYTHON) -m sphinx -W -b html doc/manual build/manual/html

deb:
	dpkg-buildpackage -us -uc -b

clean:
	rm -rf build .pybuild *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
