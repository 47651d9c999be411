# labbot: the two commands of the README are `make demo` and `make test`.
# Both do all set-up on a fresh machine: a .venv with the project and its dev extras and, as root on
# Debian, the packages the lab-in-a-box needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
APT_PACKAGES := openssh-server tgt libiscsi-bin iproute2 util-linux qemu-utils docker-compose graphviz tcpdump fonts-wqy-microhei

.PHONY: setup system-packages nested-image test lint demo bench soak clean

setup: $(STAMP) system-packages nested-image

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Installs the lab-in-a-box packages when we are root on Debian and any of them is missing.
system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	  mkdir -p /run/sshd; \
	else echo "not root on Debian: skipping apt packages (sandbox tests will skip)"; fi

# The lab-in-a-box's nested VM image (config/profiles/sandbox.yaml): a tiny qcow2 made with qemu-img, no download.
nested-image: $(STAMP) system-packages
	@if command -v qemu-img >/dev/null; then \
	  $(BIN)/python -c "from sandbox.images import ensure_nested_image; ensure_nested_image()"; \
	else echo "qemu-img missing: the sandbox's nested image is made later, by labbot sandbox up"; fi

lint: $(STAMP)
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: setup
	$(BIN)/labbot demo

bench: setup
	$(BIN)/python -m benchmarks

# The many-rounds fault-injection runs (tests/reliability, marked soak): SOAK_ROUNDS=N rounds each;
# SOAK_SEED=S replays a run (each prints its seed).
SOAK_ROUNDS ?= 10
soak: setup
	SOAK_ROUNDS=$(SOAK_ROUNDS) $(BIN)/python -m pytest -q -p no:cacheprovider -s --timeout=0 -m soak tests/reliability

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
