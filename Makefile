# radledger: the two commands a newcomer needs are `make devnet` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PKGS   := ledger storage consensus p2p registry imaging node

.PHONY: devnet test lint typecheck pytest test-native soak faults bench install clean
.PHONY: bench-net bench-scaling bench-sync bench-rpc bench-overload bench-quick

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(PKGS) tests bench configs
	$(BIN)/ruff format --check $(PKGS) tests bench configs

typecheck: $(STAMP)
	$(BIN)/mypy $(PKGS) tests bench configs

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
	tests/node/test_registry_state_root.py tests/node/test_relay.py tests/test_merkle.py \
	tests/p2p tests/node/test_rpc.py
test-native: $(STAMP)
	$(BIN)/python -m bench.native --with-tests --dest .native/tests
	cd .native/tests && RADLEDGER_EXPECT_NATIVE=1 ../../$(BIN)/python -m pytest -q -p no:cacheprovider $(NATIVE_TESTS)

## make soak: the long randomized tests: 20,000+ simulator seeds and a 200-kill loop on a real 4-process network (not run by make test).
soak: $(STAMP)
	$(BIN)/pytest -q -m slow

## make faults: the long fault-injection run on real processes (100 kill -9/restart cycles, 20 pauses beyond the view timeout, 50 partition/heal cycles in network namespaces, 5 full disks, 200 fuzzed requests per RPC operation), with the history checker; figures appended to tests/faults/results/faults.jsonl (docs/RELIABILITY.md).
faults: $(STAMP)
	RADLEDGER_FAULT_CYCLES=100 RADLEDGER_PAUSE_CYCLES=20 RADLEDGER_PARTITION_CYCLES=50 \
	RADLEDGER_DISK_CYCLES=5 \
	RADLEDGER_FUZZ_EXAMPLES=200 \
	RADLEDGER_FAULT_RESULTS=tests/faults/results/faults.jsonl \
	$(BIN)/pytest -q -s -p no:cacheprovider tests/faults

## make bench: micro-benchmarks (codec, storage, consensus core, peer link, DICOM fingerprinting), the network throughput sweep beside a Raft peer, then scaling, block sync of 10,000 blocks, RPC reads and memory under 2 minutes of overload (about 20 minutes on 2 cores; results printed and saved under bench/results/; docs/PERFORMANCE.md says what each measures).
bench: $(STAMP)
	$(BIN)/python -m bench.codec_bench
	$(BIN)/python -m bench.storage_bench
	$(BIN)/python -m bench.consensus_bench
	$(BIN)/python -m bench.p2p_bench
	$(BIN)/python -m bench.imaging_bench
	$(BIN)/python -m bench.throughput --sweep
	$(MAKE) --no-print-directory bench-scaling bench-sync bench-rpc bench-overload

# Sizes of make bench's network pieces (about 20 minutes in all on a 2-core machine); override on
# the command line, e.g. `make bench-sync BENCH_SYNC_BLOCKS=2000` for a quicker sync.
BENCH_SCALING_S   ?= 5
BENCH_SYNC_BLOCKS ?= 10000
BENCH_RPC_S       ?= 10
BENCH_OVERLOAD_S  ?= 120
BENCH_OVERLOAD_RATE ?= 2500

## make bench-net: the throughput and latency sweep beside a Raft peer (bench/results/throughput.json).
bench-net: $(STAMP)
	$(BIN)/python -m bench.throughput --sweep

## make bench-scaling: saturation and latency at 50% for 4 and 7 validators and 200 B, 1 KiB, 8 KiB transactions (bench/results/scaling.json).
bench-scaling: $(STAMP)
	$(BIN)/python -m bench.scaling --duration $(BENCH_SCALING_S)

## make bench-sync: a wiped validator catching up BENCH_SYNC_BLOCKS blocks (bench/results/sync.json).
bench-sync: $(STAMP)
	$(BIN)/python -m bench.sync --blocks $(BENCH_SYNC_BLOCKS)

## make bench-rpc: GET /v1/txs/{hash} throughput at concurrency 1, 8 and 32 (bench/results/rpc_read.json).
bench-rpc: $(STAMP)
	$(BIN)/python -m bench.rpc_read --duration $(BENCH_RPC_S)

## make bench-overload: RSS and mempool under BENCH_OVERLOAD_RATE tx/s for BENCH_OVERLOAD_S s (bench/results/overload.json).
bench-overload: $(STAMP)
	$(BIN)/python -m bench.throughput --overload --rate $(BENCH_OVERLOAD_RATE) --duration $(BENCH_OVERLOAD_S)

## make bench-quick: every network piece once with tiny sizes (a few minutes; results under bench/results/quick/, too small to quote).
bench-quick: $(STAMP)
	$(BIN)/python -m bench.throughput --rate 250 --duration 3 --no-raft --out bench/results/quick/throughput.json
	$(BIN)/python -m bench.scaling --validators --payloads 8192 --ladder 25 50 --duration 2 --out bench/results/quick/scaling.json
	$(BIN)/python -m bench.sync --blocks 200 --out bench/results/quick/sync.json
	$(BIN)/python -m bench.rpc_read --txs 1000 --duration 2 --concurrency 8 --out bench/results/quick/rpc_read.json
	$(BIN)/python -m bench.throughput --overload --rate 1500 --duration 10 --out bench/results/quick/overload.json

clean:
	rm -rf $(VENV) .native .mypy_cache .ruff_cache .pytest_cache .hypothesis
