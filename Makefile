# One command for the main job (`make demo`) and one for the tests (`make test`).
# Both create .venv and install xmr into it on first use.
PYTHON ?= python3
VENV ?= .venv
FAISS ?= cpu
BIN := $(VENV)/bin
STAMP := $(VENV)/.xmr-installed
DEMO_STAMP := $(VENV)/.xmr-demo-installed

.PHONY: demo test bench clean

# The demo needs xmr and one FAISS only (no test tools, Ray or PostgreSQL driver).
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[$(FAISS)]'
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[$(FAISS),postgres,ray,dev,faces]'
	# clip-retrieval's ClipClient and clip-front, for the compatibility tests; without its own
	# dependencies (they pin faiss-cpu, pyspark, an old torch...): the client needs only requests.
	$(BIN)/python -m pip install --quiet --no-deps 'clip-retrieval==2.45.0'
	touch $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python scripts/bench_search.py --n 1000000 --dim 512 --queries 1000 --filter-fraction 0.001 0.01 0.05 0.2 0.5 0.9 --dupes 0.95
	$(BIN)/python scripts/bench_index.py --images 96 --model ViT-B-32 --ocr
	$(BIN)/python scripts/bench_words.py
	$(BIN)/python -m scripts.eval_words
	$(BIN)/python -m scripts.eval_cutoff
	$(BIN)/python -m scripts.eval_tags
	$(BIN)/python scripts/bench_query.py --model ViT-B-32
	$(BIN)/python scripts/bench_server.py --model ViT-B-32
	$(BIN)/python scripts/bench_distributed.py --images 48 336
	$(BIN)/python scripts/bench_watch.py
	$(BIN)/python scripts/bench_people.py --faces 100000
	$(BIN)/python scripts/bench_faces.py --images 24 --size 4000x3000 --calibrate 240

clean:
	rm -rf $(VENV) demo .pytest_cache
