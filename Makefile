# Two commands matter: `make run` and `make test`. Both start with `make install`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run lint test test-swarm unit bench clean

install:
	@bash scripts/install.sh

run: install
	@bash scripts/engine.sh
	$(BIN)/dockyard server

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install lint
	@vars="$$(bash scripts/services.sh)" && set -a && eval "$$vars" && set +a && \
	  $(BIN)/pytest $(PYTEST_ARGS)

test-swarm: install
	@vars="$$(bash scripts/services.sh)" && set -a && eval "$$vars" && set +a && \
	  $(BIN)/pytest -m swarm $(PYTEST_ARGS)

unit: install
	$(BIN)/pytest tests/unit

bench: install
	@vars="$$(bash scripts/services.sh)" && set -a && eval "$$vars" && set +a && \
	  $(BIN)/python bench/api.py && $(BIN)/python bench/deploy.py && \
	  $(BIN)/python bench/deploy.py --runtime swarm && $(BIN)/python bench/git_deploy.py && \
	  $(BIN)/python bench/deploy.py --sources && $(BIN)/python bench/run.py && \
	  $(BIN)/python bench/rollback.py && $(BIN)/python bench/cli.py

# The router outlives the server on purpose: clean stops the one `make run` left.
clean:
	-@test ! -x $(BIN)/dockyard || test ! -d .dockyard || $(BIN)/dockyard server --stop-router
	rm -rf $(VENV) .dockyard .mypy_cache .ruff_cache .pytest_cache
