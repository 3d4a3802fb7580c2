#!/usr/bin/env bash
# The issue-23 benchmark on a GPU: vLLM serving the base and the three role adapters,
# driven by bench/throughput.py at 1, 4, 16 and 64 concurrent clients.
#
#   OUT=/some/empty/folder bash bench/gpu.sh
#
# Refuses at once (exit 3, nothing installed, nothing written) when no NVIDIA GPU is
# present. Otherwise it
#   1. checks its inputs: the base checkpoint (`umiq models fetch`), the shipped adapters
#      (worker/models/shipped/acme-demo/{planner,caller,summarizer}) and the Acme test
#      trajectories the prompts come from (`umiq data build`);
#   2. installs vLLM into a venv with pip (unless that venv already has it) and a client
#      venv with umiq itself, no extras (the engine backend needs no torch);
#   3. starts `vllm serve <base> --enable-lora --lora-modules planner=... caller=...
#      summarizer=...` on loopback and waits for /health;
#   4. runs bench/throughput.py --backends openai --dialect vllm at each level;
#   5. writes under $OUT: gpu-bench.json (every row and the command), gpu-bench.md (the
#      table), gpu.txt (nvidia-smi, vLLM version, the serve command), gpu-memory.csv
#      (GPU memory before vLLM started, after it loaded, after the benchmark) and
#      vllm.log.
#
# Settings (environment): OUT (default .umiq/gpu-bench), UMIQ_BASE_DIR (default
# .umiq/models/smollm2-135m-instruct), UMIQ_ADAPTERS_DIR (default the shipped
# acme-demo), UMIQ_BENCH_DATA (default .umiq/data/acme/test.json), VLLM_SPEC (pip
# requirement, default vllm==0.33.0), VLLM_VENV, CLIENT_VENV (default under
# .umiq/gpu), VLLM_PORT (8000), VLLM_START_TIMEOUT_S (900), VLLM_GPU_MEMORY_UTILIZATION
# (0.5), BENCH_LEVELS ("1 4 16 64"), BENCH_REQUESTS (256 per level),
# BENCH_MAX_NEW_TOKENS (64). pip honours PIP_INDEX_URL / PIP_FIND_LINKS for a machine
# without internet access.
set -euo pipefail

die() {
    printf 'bench/gpu.sh: %s\n' "$1" >&2
    exit 1
}
no_gpu() {
    printf 'bench/gpu.sh: no NVIDIA GPU here: %s; nothing was installed or run\n' "$1" >&2
    exit 3
}

# 0. A GPU, before anything else (builtins only up to here).
if ! command -v nvidia-smi >/dev/null 2>&1; then
    no_gpu "nvidia-smi is not on PATH"
fi
if ! gpus=$(nvidia-smi -L 2>&1); then
    no_gpu "nvidia-smi -L failed: ${gpus:0:300}"
fi
case $gpus in
*GPU*) ;;
*) no_gpu "nvidia-smi -L lists no GPU" ;;
esac

here=${BASH_SOURCE[0]%/*}
if [[ $here == "${BASH_SOURCE[0]}" ]]; then here=.; fi
ROOT=$(cd "$here/.." && pwd)
cd "$ROOT"

OUT=${OUT:-$ROOT/.umiq/gpu-bench}
BASE=${UMIQ_BASE_DIR:-$ROOT/.umiq/models/smollm2-135m-instruct}
ADAPTERS=${UMIQ_ADAPTERS_DIR:-$ROOT/worker/models/shipped/acme-demo}
DATA=${UMIQ_BENCH_DATA:-$ROOT/.umiq/data/acme/test.json}
VLLM_SPEC=${VLLM_SPEC:-vllm==0.33.0}
VLLM_VENV=${VLLM_VENV:-$ROOT/.umiq/gpu/vllm-venv}
CLIENT_VENV=${CLIENT_VENV:-$ROOT/.umiq/gpu/client-venv}
PORT=${VLLM_PORT:-8000}
START_TIMEOUT_S=${VLLM_START_TIMEOUT_S:-900}
GPU_MEM=${VLLM_GPU_MEMORY_UTILIZATION:-0.5}
read -r -a LEVELS <<<"${BENCH_LEVELS:-1 4 16 64}"
REQUESTS=${BENCH_REQUESTS:-256}
MAX_NEW_TOKENS=${BENCH_MAX_NEW_TOKENS:-64}
ROLES=(planner caller summarizer)

# 1. Inputs, before installing anything.
[[ -f $BASE/config.json ]] ||
    die "no base checkpoint at $BASE (config.json missing): run 'umiq models fetch' or set UMIQ_BASE_DIR"
for role in "${ROLES[@]}"; do
    [[ -f $ADAPTERS/$role/adapter_config.json ]] ||
        die "no $role adapter at $ADAPTERS/$role: set UMIQ_ADAPTERS_DIR"
done
[[ -f $DATA ]] || die "no benchmark prompts at $DATA: run 'umiq data build --out .umiq/data/acme' or set UMIQ_BENCH_DATA"
rank=0
for role in "${ROLES[@]}"; do
    r=$(sed -n 's/^ *"r": *\([0-9][0-9]*\).*/\1/p' "$ADAPTERS/$role/adapter_config.json" | head -n 1)
    [[ -n $r ]] || die "no LoRA rank (\"r\") in $ADAPTERS/$role/adapter_config.json"
    if ((r > rank)); then rank=$r; fi
done
lora_rank=8 # vLLM takes ranks 8, 16, 32, ...: the smallest that holds every adapter
while ((lora_rank < rank)); do lora_rank=$((lora_rank * 2)); done

mkdir -p "$OUT"
[[ -w $OUT ]] || die "cannot write to OUT=$OUT"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to make the venvs"

# 2. vLLM and the client, each in its own venv.
if [[ ! -x $VLLM_VENV/bin/vllm ]]; then
    echo "installing $VLLM_SPEC into $VLLM_VENV"
    python3 -m venv "$VLLM_VENV"
    "$VLLM_VENV/bin/python" -m pip install --quiet --upgrade pip ||
        die "pip could not upgrade itself in $VLLM_VENV"
    "$VLLM_VENV/bin/python" -m pip install --quiet "$VLLM_SPEC" ||
        die "pip could not install $VLLM_SPEC (no index reachable? set PIP_INDEX_URL or PIP_FIND_LINKS)"
fi
if ! "$CLIENT_VENV/bin/python" -c 'import worker.models.engine' >/dev/null 2>&1; then
    echo "installing umiq (no extras) into $CLIENT_VENV"
    python3 -m venv "$CLIENT_VENV"
    "$CLIENT_VENV/bin/python" -m pip install --quiet -c constraints.txt -e . ||
        die "pip could not install umiq into $CLIENT_VENV"
fi
PY=$CLIENT_VENV/bin/python

# 3. vLLM with one LoRA module per role, on loopback.
modules=()
for role in "${ROLES[@]}"; do modules+=("$role=$ADAPTERS/$role"); done
serve=(
    "$VLLM_VENV/bin/vllm" serve "$BASE"
    --host 127.0.0.1 --port "$PORT"
    --enable-lora --max-loras "${#ROLES[@]}" --max-lora-rank "$lora_rank"
    --lora-modules "${modules[@]}"
    --max-model-len 4096
    --gpu-memory-utilization "$GPU_MEM"
    --enable-prompt-tokens-details
)
url=http://127.0.0.1:$PORT

gpu_memory() { # label -> one CSV line per GPU
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader |
        while IFS= read -r line; do printf '%s, %s\n' "$1" "$line"; done >>"$OUT/gpu-memory.csv"
}

{
    echo "# bench/gpu.sh"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "gpus:"
    printf '%s\n' "$gpus"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    echo "vllm: $("$VLLM_VENV/bin/python" -c 'import vllm; print(vllm.__version__)' 2>&1)"
    echo "serve: ${serve[*]#"$ROOT"/}"
    echo "levels: ${LEVELS[*]}; requests per level: $REQUESTS; max new tokens: $MAX_NEW_TOKENS"
} >"$OUT/gpu.txt"
echo "label, name, memory.used, memory.total" >"$OUT/gpu-memory.csv"
gpu_memory before-vllm

echo "starting: ${serve[*]}"
"${serve[@]}" >"$OUT/vllm.log" 2>&1 &
vllm_pid=$!
stop_vllm() {
    if kill -0 "$vllm_pid" 2>/dev/null; then
        kill "$vllm_pid" 2>/dev/null || true
        wait "$vllm_pid" 2>/dev/null || true
    fi
}
trap stop_vllm EXIT

healthy() {
    "$PY" - "$url/health" <<'EOF'
import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError:
    sys.exit(1)
EOF
}
waited=0
until healthy; do
    kill -0 "$vllm_pid" 2>/dev/null ||
        die "vllm serve exited before it was healthy; the end of $OUT/vllm.log:
$(tail -n 40 "$OUT/vllm.log")"
    if ((waited >= START_TIMEOUT_S)); then
        die "vllm serve was not healthy at $url within $START_TIMEOUT_S s; see $OUT/vllm.log"
    fi
    sleep 2
    waited=$((waited + 2))
done
echo "vLLM healthy at $url after about $waited s"
gpu_memory after-load

# 4. The benchmark: role requests from 1, 4, 16, 64 client threads.
"$PY" bench/throughput.py --backends openai --dialect vllm --engine-url "$url" \
    --data "$DATA" --levels "${LEVELS[@]}" --requests "$REQUESTS" \
    --max-new-tokens "$MAX_NEW_TOKENS" \
    --json "$OUT/gpu-bench.json" --markdown "$OUT/gpu-bench.md" |
    tee "$OUT/throughput.txt"
gpu_memory after-bench

echo "results in $OUT: gpu-bench.json gpu-bench.md gpu.txt gpu-memory.csv vllm.log"
