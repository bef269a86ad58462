#!/usr/bin/env bash
# The GPU check: on a CUDA machine with torch and torchvision installed, install xmr's other needs
# from a folder of wheels (scripts/gpu_wheels.sh makes it), run the GPU tests and the index,
# query and search benchmarks on CUDA, and print one JSON of it all (also written to OUT/gpu.json).
#     scripts/gpu_check.sh WHEELS_DIR [OUT_DIR]          (run in the repository's root)
# Sizes: XMR_GPU_IMAGES (1024 web-size photos, 1024x768) and XMR_GPU_BIG (256 12-MP photos),
# XMR_GPU_VECTORS (1000000). Exit 1 if a test failed. About 6-8 minutes on an H200.
set -uo pipefail
wheels=${1:?usage: scripts/gpu_check.sh WHEELS_DIR [OUT_DIR]}
out=${2:-/tmp/xmr-gpu-check}
mkdir -p "$out"
site=/tmp/xmr-gpu-site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl || exit 1
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 - <<'PY' > "$out/machine.json" || exit 1
import json, os, torch, torchvision
assert torch.cuda.is_available(), "no CUDA device"
p = torch.cuda.get_device_properties(0)
print(json.dumps({"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2**30, 1), "cpu_count": os.cpu_count(),
                  "torch": torch.__version__, "torchvision": torchvision.__version__, "cuda": torch.version.cuda}))
PY
# The GPU tests, and the CPU tests of the same code that need no media libraries (no PyAV there)
XMR_REQUIRE_GPU=1 timeout 900 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_device_jpeg.py \
    tests/test_vectors.py > "$out/tests.log" 2>&1
tests_rc=$?
run() {  # NAME CMD...: the command's JSON to OUT/NAME.json, its errors to OUT/NAME.err
    local name=$1; shift
    timeout 900 "$@" > "$out/$name.json" 2> "$out/$name.err" || echo "{\"failed\": \"$name: see $name.err\"}" > "$out/$name.json"
}
run index_web python3 scripts/bench_index.py --device cuda --images "${XMR_GPU_IMAGES:-1024}" --size 1024x768
run index_12mp python3 scripts/bench_index.py --device cuda --images "${XMR_GPU_BIG:-256}" --size 4000x3000
run index_cpu_decoders python3 scripts/bench_index.py --device cpu --images 64 --size 1024x768 --decoders
run query python3 scripts/bench_query.py --device cuda --n 100000
run search python3 scripts/bench_search.py --n "${XMR_GPU_VECTORS:-1000000}" --dim 512 --queries 1000 --torch-device cuda
python3 - "$out" "$tests_rc" <<'PY' | tee "$out/gpu.json"
import json, pathlib, sys
out, rc = pathlib.Path(sys.argv[1]), int(sys.argv[2])
tail = (out / "tests.log").read_text().strip().splitlines()[-1:] if (out / "tests.log").exists() else []
result = {"machine": json.loads((out / "machine.json").read_text()), "tests": {"exit": rc, "summary": tail}}
for name in ("index_web", "index_12mp", "index_cpu_decoders", "query", "search"):
    try:
        result[name] = json.loads((out / f"{name}.json").read_text())
    except ValueError:
        result[name] = {"failed": f"no JSON; see {name}.err"}
print(json.dumps(result, indent=2))
PY
exit $(( tests_rc != 0 ))
