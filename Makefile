# Every target builds its own virtualenv from nothing; python3 (>= 3.11) with its headers and a C
# compiler must exist (jogger/engine/supervise.c, the job supervisor, is built on install).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CERTS := certs
USER ?= $(shell id -un)
LISTEN ?= 127.0.0.1:7654

.PHONY: venv test test-cgroup2 test-slurm lint demo bench bench-cgroup2 soak grpc gen-certs run-server install-cli dist clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py jogger/engine/supervise.c jogger/engine/spawn_child.h jogger/engine/sandbox.h jogger/engine/times.h
	@$(PYTHON) -c 'import sys; sys.exit("jogger needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@command -v cc > /dev/null || { echo "jogger needs a C compiler (Debian: apt-get install gcc python3-dev)"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	# compat: a plain path in a .pth, where the default editable mode imports a finder (and
	# pathlib, re, ...) at every Python start: 10 ms of every jog (bench/README.md, issue 21).
	$(BIN)/pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The cgroup tests against a real cgroup v2 hierarchy with every controller, inside a QEMU VM
# (Debian's kernel, TCG; installs qemu-system-x86, linux-image-amd64, busybox-static). Root.
test-cgroup2: venv
	$(BIN)/python tests/vm/run_in_vm.py --timeout 1800 -- tests/vm tests/engine -q

# The Slurm executor against a real one-node Slurm cluster on loopback (tests/slurm/: installs
# Debian's slurmctld, slurmd, slurm-client and munge, starts the daemons, stops them after).
# Root; without it, says so and passes nothing off as tested.
test-slurm: venv
	@if [ "$$(id -u)" != 0 ]; then echo "make test-slurm: skipped: a Slurm cluster needs root"; exit 0; fi
	JOGGER_SLURM_TESTS=1 $(BIN)/pytest tests/slurm

# bench/cgroups.py on cgroup v2, in the same VM (TCG: compare ratios, not absolute times).
# VM_CPUS=1: one vCPU, whose time the host cannot steal unseen from a second one.
VM_CPUS ?= 2
bench-cgroup2: venv
	$(BIN)/python tests/vm/run_in_vm.py --timeout 1800 --cpus $(VM_CPUS) --script bench/cgroups.py

# A real server on loopback, real jobs through the real jog; leaves nothing running.
demo: venv
	$(BIN)/python -m jogger.demo

bench: venv
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/cgroups.py
	$(BIN)/python bench/supervisor.py
	$(BIN)/python bench/hosts.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/labels.py
	$(BIN)/python bench/starts.py

# 8 users x 50 live jobs x 5 followers against a real server for 5 minutes (bench/soak.py);
# by hand only. SOAK_ARGS="--duration 60" for a shorter run; "--trace t.json" to time each step
# of the server's calls (bench/soak_trace.py), "--unary-apart" to keep Start, Status and List
# off the followers' connections.
soak: venv
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# Regenerate the committed protobuf code from proto/: ours into jogger/v1, gRPC's own (health,
# reflection; copies of grpc-proto's) under their official names into jogger/standard. Each of
# those gets a descriptor pool of its own instead of protobuf's default one, where
# grpcio-health-checking and grpcio-reflection put the same names: the two would refuse to
# load in one process ("duplicate symbol").
STANDARD_PROTOS := proto/grpc/health/v1/health.proto proto/grpc/reflection/v1/reflection.proto \
	proto/grpc/reflection/v1alpha/reflection.proto
grpc: venv
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. proto/jogger/v1/jobs.proto
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=jogger/standard \
		--pyi_out=jogger/standard $(STANDARD_PROTOS)
	sed -i 's/_descriptor_pool\.Default()/_descriptor_pool.DescriptorPool()/' \
		$(patsubst proto/%.proto,jogger/standard/%_pb2.py,$(STANDARD_PROTOS))

# Development certificates in ./certs (a CA, a server cert, a cert for $(USER)), made once and
# kept while they are good, then the export lines for the server and the CLI:
#     eval "$$(make -s gen-certs)"
gen-certs: venv
	@$(BIN)/jogger certs --out $(CERTS) --user $(USER)

# jogger-server in the foreground (Ctrl-C stops it); jog from another terminal.
run-server: venv
	@$(BIN)/jogger certs --out $(CERTS) --user $(USER) > /dev/null
	@echo "jogger-server on $(LISTEN), state in .state; Ctrl-C stops it. In another terminal, here:"
	@echo '    eval "$$(make -s gen-certs)"; jog run -- uname -a'
	JOGGER_CA_CERT_FILE=$(CERTS)/ca.pem JOGGER_SERVER_CERT_FILE=$(CERTS)/server.pem \
	JOGGER_SERVER_KEY_FILE=$(CERTS)/server-key.pem \
	$(BIN)/jogger-server --listen $(LISTEN) --state-dir .state

# A link to this checkout's jog in ~/.local/bin, and what to do if that is not on the PATH.
install-cli: venv
	mkdir -p $(HOME)/.local/bin
	ln -sf $(abspath $(BIN)/jog) $(HOME)/.local/bin/jog
	@case ":$$PATH:" in \
	*":$(HOME)/.local/bin:"*) echo "jog is in $(HOME)/.local/bin, which is on your PATH" ;; \
	*) echo "jog is in $(HOME)/.local/bin, which is not on your PATH. For this shell:"; \
	   echo '    export PATH="$$HOME/.local/bin:$$PATH"'; \
	   echo "and for every new one, add that line to ~/.bashrc (or your shell's startup file)." ;; \
	esac

# The sdist and the wheel (built from the sdist, as pip would) in dist/; see README, Packaging.
dist: venv
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .state jogger/engine/_spawn.*.so
