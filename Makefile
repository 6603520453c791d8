# radledger: the two commands a newcomer needs are `make devnet` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PKGS   := ledger storage consensus p2p registry imaging node

.PHONY: devnet test lint typecheck pytest test-native soak bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(PKGS) tests bench
	$(BIN)/ruff format --check $(PKGS) tests bench

typecheck: $(STAMP)
	$(BIN)/mypy $(PKGS) tests bench

pytest: $(STAMP)
	$(BIN)/pytest -q

## make devnet: install into .venv if needed, then run a local 4-validator network in
## the foreground (state in ./devnet, reused across runs; Ctrl-C stops every node).
devnet: $(STAMP)
	$(BIN)/radledger devnet --validators 4 --home devnet

## make test: install into .venv if needed, then lint, type-check and run the test suite,
## then the tests that cover the compiled modules again against a mypyc build of them.
test: lint typecheck pytest test-native

## make test-native: compile the hot modules (pyproject.toml [tool.radledger]) in a copy of the
## tree (.native/, never the tree itself) and run the tests that exercise them there.
NATIVE_TESTS := tests/test_native.py tests/test_codec.py tests/test_types.py \
	tests/test_record_fuzz.py tests/test_schema_fast.py tests/test_receipt.py \
	tests/test_receipt_fuzz.py tests/test_protocol_vectors.py tests/registry tests/storage \
	tests/consensus tests/node/test_mempool.py tests/node/test_rpc_registry.py \
	tests/node/test_registry_state_root.py tests/node/test_relay.py
test-native: $(STAMP)
	$(BIN)/python -m bench.native --with-tests --dest .native/tests
	cd .native/tests && RADLEDGER_EXPECT_NATIVE=1 ../../$(BIN)/python -m pytest -q -p no:cacheprovider $(NATIVE_TESTS)

## make soak: the long randomized tests: 20,000+ simulator seeds and a 200-kill loop on a real 4-process network (not run by make test).
soak: $(STAMP)
	$(BIN)/pytest -q -m slow

## make bench: micro-benchmarks (codec, storage, consensus core, peer link, DICOM fingerprinting) and the network throughput sweep beside a Raft peer (results printed and saved under bench/results/).
bench: $(STAMP)
	$(BIN)/python -m bench.codec_bench
	$(BIN)/python -m bench.storage_bench
	$(BIN)/python -m bench.consensus_bench
	$(BIN)/python -m bench.p2p_bench
	$(BIN)/python -m bench.imaging_bench
	$(BIN)/python -m bench.throughput --sweep

clean:
	rm -rf $(VENV) .native .mypy_cache .ruff_cache .pytest_cache .hypothesis
