#!/usr/bin/env bash
# HellaSwag (the first N validation tasks, default 400) through lm-evaluation-harness's
# `local-completions` model against `ctxsparse serve`, to compare with `ctxsparse eval`'s own number.
#
#   scripts/lm-eval-hellaswag.sh [--limit N] [--model NAME] [--url http://127.0.0.1:8080]
#                                [--parallel N] [--threads N] [--out DIR]
#
# What it does:
# 1. A venv in ~/.cache/ctxsparse/lm-eval-venv (LM_EVAL_VENV overrides) with `lm_eval[api]`
#    (LM_EVAL_SPEC overrides the pinned version) from the Python package index. No torch and no
#    transformers: lm-eval (0.4.x) loads its model classes lazily, and the `local-completions` path
#    imports only requests, aiohttp, tenacity and tqdm (the `api` extra) on top of lm-eval's core
#    dependencies (datasets, numpy, scikit-learn, ...; ~760 MB in all). Its tokenizer is the
#    server's own (`tokenizer_backend=remote`: /tokenizer_info, /tokenize, /detokenize), so no
#    Hugging Face tokenizer is downloaded either; nothing here needs the Hugging Face hub.
# 2. A local lm-eval task, `ctxsparse_hellaswag_local`, from ../shared/eval/hellaswag/
#    hellaswag_val_full.txt (HELLASWAG_FILE overrides; 6 lines per task: context, gold index 0-3,
#    four endings): a JSONL file of the first N tasks and a task YAML with `dataset_path: json`
#    reading it. It is lm-eval's own `hellaswag` task on this data: query = the context line,
#    choices = the endings, both passed through lm-eval's own `preprocess` (imported from the
#    installed lm_eval.tasks.hellaswag.utils, a no-op on the first 400 tasks), the default target
#    delimiter " " (each choice is scored as " " + ending after the query), zero-shot, acc and
#    acc_norm (+ acc_bytes). One difference from lm-eval's hellaswag on the Hugging Face copy of the
#    data: this file's contexts are llama.cpp's rendering, where the second part of the context
#    (ctx_b) is not capitalised as lm-eval's process_docs does ("... on a roof. he" rather than
#    "... on a roof. He"). `ctxsparse eval` reads the same file, so the two runs score the same text.
# 3. `ctxsparse serve` on a free port (or the running server given by --url / CTXSPARSE_URL), wait
#    for /health, run `lm_eval --model local-completions` on the task, stop the server.
# 4. Print acc and acc_norm with their stderr. lm-eval's acc_norm divides each choice's summed
#    log-probability by the choice's length in characters, without the delimiter; `ctxsparse eval`
#    (and DATA.md's reference figures) divide by the UTF-8 bytes of " " + choice. The summary also
#    gives acc_norm by that rule, recomputed from lm-eval's per-sample log-likelihoods
#    (--log_samples), so the two numbers can be compared like for like.
#
# Needs: python3 (or PYTHON=/path/to/python) with venv/ensurepip (pip), Node 20 and a built tree (npm ci && npm run build), the
# model already pulled (`ctxsparse pull smollm2-135m-instruct`). On a shared machine, wrap it:
# `nice -n 5 scripts/lm-eval-hellaswag.sh` (the server gets --threads 1 unless told otherwise).
set -euo pipefail

die() { echo "lm-eval-hellaswag: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIMIT=400
MODEL=smollm2-135m-instruct
URL=${CTXSPARSE_URL:-}
PARALLEL=4
THREADS=1
OUT=${LM_EVAL_OUT:-$HOME/.cache/ctxsparse/lm-eval-hellaswag}
VENV=${LM_EVAL_VENV:-$HOME/.cache/ctxsparse/lm-eval-venv}
SPEC=${LM_EVAL_SPEC:-lm_eval[api]==0.4.13}
DATA=${HELLASWAG_FILE:-$(dirname "$ROOT")/shared/eval/hellaswag/hellaswag_val_full.txt}

while [ $# -gt 0 ]; do
  case "$1" in
    --limit) LIMIT=${2:?--limit needs a number}; shift 2 ;;
    --model) MODEL=${2:?--model needs a name}; shift 2 ;;
    --url) URL=${2:?--url needs a base URL}; shift 2 ;;
    --parallel) PARALLEL=${2:?--parallel needs a number}; shift 2 ;;
    --threads) THREADS=${2:?--threads needs a number}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
case "$LIMIT" in ''|*[!0-9]*|0) die "--limit must be a positive integer, got '$LIMIT'" ;; esac

# --- 1. Python, pip and the venv ---------------------------------------------------------------
PY=${PYTHON:-$(command -v python3 || command -v python || true)}
[ -n "$PY" ] && command -v "$PY" >/dev/null 2>&1 \
  || die "python3 not found${PYTHON:+ at $PYTHON}: install Python 3.9 or newer (with venv and pip) first"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
  || die "$("$PY" -V 2>&1) is too old: lm-eval needs Python 3.9 or newer"
[ -f "$DATA" ] || die "HellaSwag data not found at $DATA (set HELLASWAG_FILE)"

if [ ! -x "$VENV/bin/lm_eval" ] || ! "$VENV/bin/python" -c 'import lm_eval, aiohttp, tenacity, requests' 2>/dev/null; then
  "$PY" -c 'import venv, ensurepip' 2>/dev/null \
    || die "python's venv/ensurepip modules are missing, so pip cannot be set up (Debian: apt-get install python3-venv)"
  echo "lm-eval-hellaswag: creating $VENV and installing $SPEC (no torch)" >&2
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV" || die "could not create the venv at $VENV"
  "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || die "pip is missing in the venv at $VENV (ensurepip failed)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SPEC" \
    || die "pip could not install $SPEC (is the Python package index reachable?)"
fi
if "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("torch") else 1)'; then
  echo "lm-eval-hellaswag: note: torch is present in $VENV (not needed here)" >&2
fi

# --- 2. The local task -------------------------------------------------------------------------
TASKDIR=$OUT/task
mkdir -p "$TASKDIR" "$OUT/results"
JSONL=$TASKDIR/hellaswag_first$LIMIT.jsonl
"$VENV/bin/python" - "$DATA" "$LIMIT" "$JSONL" "$TASKDIR/ctxsparse_hellaswag_local.yaml" <<'PY'
import json, sys
from lm_eval.tasks.hellaswag.utils import preprocess  # lm-eval's own text clean-up for HellaSwag

src, limit, jsonl, yaml_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(src, encoding="utf-8") as f:
    lines = f.read().split("\n")
if lines and lines[-1] == "":
    lines.pop()
n = min(limit, len(lines) // 6)
if n < limit:
    sys.exit(f"lm-eval-hellaswag: {src} holds {len(lines) // 6} tasks, fewer than --limit {limit}")
changed = 0
with open(jsonl, "w", encoding="utf-8") as out:
    for t in range(n):
        ctx, gold, *endings = (s.rstrip("\r") for s in lines[6 * t: 6 * t + 6])
        if not gold.strip().isdigit() or int(gold) > 3 or len(endings) != 4:
            sys.exit(f"lm-eval-hellaswag: {src}:{6 * t + 2}: expected a gold index 0-3 and four endings")
        query, choices = preprocess(ctx), [preprocess(e) for e in endings]
        changed += (query != ctx) + sum(c != e for c, e in zip(choices, endings))
        out.write(json.dumps({"query": query, "choices": choices, "label": int(gold)}, ensure_ascii=False) + "\n")
# lm-eval's hellaswag.yaml with the data from the local file (the same fields and metrics; the
# default target_delimiter " " and fewshot none, spelled out)
task = {
    "task": "ctxsparse_hellaswag_local",
    "dataset_path": "json",
    "dataset_name": None,
    "dataset_kwargs": {"data_files": {"validation": jsonl}},
    "output_type": "multiple_choice",
    "validation_split": "validation",
    "test_split": None,
    "doc_to_text": "{{query}}",
    "doc_to_target": "label",
    "doc_to_choice": "choices",
    "target_delimiter": " ",
    "num_fewshot": 0,
    "metric_list": [
        {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm", "acc_bytes")
    ],
    "metadata": {"version": 1.0},
}
with open(yaml_path, "w", encoding="utf-8") as f:
    json.dump(task, f, indent=2)  # JSON is YAML
print(f"lm-eval-hellaswag: task ctxsparse_hellaswag_local = the first {n} tasks of {src} ({changed} strings changed by lm-eval's preprocess)", file=sys.stderr)
PY

# --- 3. The server -----------------------------------------------------------------------------
SERVER_PID=
LOG=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$URL" ]; then
  command -v node >/dev/null 2>&1 || die "node not found: the server needs Node 20 or newer"
  [ -f "$ROOT/dist/src/cli/main.js" ] || die "no build in $ROOT/dist: run 'npm ci && npm run build' first"
  LOG=$OUT/server.log
  # --port 0: the system picks a free port, which the server prints on its first line
  node "$ROOT/bin/ctxsparse.js" serve -m "$MODEL" --port 0 --parallel "$PARALLEL" --threads "$THREADS" >"$LOG" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    URL=$(sed -n 's|^serving .* at \(http://[^/]*\)/ (playground).*|\1|p' "$LOG" | head -n 1)
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(tail -n 1 "$LOG")"
    sleep 0.5
  done
  [ -n "$URL" ] || die "the server printed no address within 300 s (see $LOG)"
  echo "lm-eval-hellaswag: started ctxsparse serve (pid $SERVER_PID) at $URL" >&2
fi
URL=${URL%/}
URL=${URL%/v1}
"$VENV/bin/python" - "$URL/health" <<'PY' || die "no healthy server at $URL (GET /health)"
import sys, time, urllib.request
for _ in range(300):
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(1)
sys.exit(1)
PY

# --- 4. lm-eval --------------------------------------------------------------------------------
# tokenizer_backend=remote: lm-eval tokenizes through the server's /tokenize, so the ids it sends
# (tokenized_requests, the default) are the model's own and its context/continuation split is the
# one the server scores. num_concurrent = the server's slots, so requests share forward passes;
# max_length = the server's context (2048 here; lm-eval keeps one token for the generated one).
RUN_DIR=$OUT/results/$(date -u +%Y%m%dT%H%M%SZ)
MODEL_ARGS="model=$MODEL,base_url=$URL/v1/completions,tokenizer_backend=remote,tokenized_requests=True,num_concurrent=$PARALLEL,max_retries=3,timeout=600,max_length=2048"
echo "lm-eval-hellaswag: lm_eval --model local-completions --model_args $MODEL_ARGS --tasks ctxsparse_hellaswag_local --include_path $TASKDIR" >&2
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_DATASETS_CACHE=$OUT/hf-datasets \
  "$VENV/bin/lm_eval" --model local-completions --model_args "$MODEL_ARGS" \
  --tasks ctxsparse_hellaswag_local --include_path "$TASKDIR" \
  --output_path "$RUN_DIR" --log_samples --seed 1234 \
  || die "lm_eval failed${LOG:+ (server log: $LOG)}"
cleanup
SERVER_PID=

# --- 5. The numbers ----------------------------------------------------------------------------
"$VENV/bin/python" - "$RUN_DIR" "$MODEL" "$LIMIT" <<'PY'
import glob, json, math, os, sys
run_dir, model, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
results = sorted(glob.glob(os.path.join(run_dir, "**", "results_*.json"), recursive=True))
samples = sorted(glob.glob(os.path.join(run_dir, "**", "samples_ctxsparse_hellaswag_local_*.jsonl"), recursive=True))
if not results or not samples:
    sys.exit(f"lm-eval-hellaswag: no results under {run_dir}")
r = json.load(open(results[-1]))["results"]["ctxsparse_hellaswag_local"]
pct = lambda k: (100 * r[f"{k},none"], 100 * r[f"{k}_stderr,none"])
# acc_norm by ctxsparse eval's rule: the summed log-probability over the UTF-8 bytes of " " + ending
hits = n = 0
for line in open(samples[-1], encoding="utf-8"):
    s = json.loads(line)
    lls = [float(x[0]) for x in s["filtered_resps"]]
    conts = [a[1] for a in s["arguments"]] if isinstance(s["arguments"], list) else [s["arguments"][k]["arg_1"] for k in sorted(s["arguments"])]
    scores = [ll / len(c.encode("utf-8")) for ll, c in zip(lls, conts)]
    hits += max(range(len(scores)), key=lambda i: (scores[i], -i)) == int(s["doc"]["label"])
    n += 1
p = hits / n
print(f"HellaSwag, first {limit} tasks, {model}, lm-eval local-completions via ctxsparse serve ({n} scored):")
print("  acc       %.2f ± %.2f" % pct("acc"))
print("  acc_norm  %.2f ± %.2f   (lm-eval's: / characters of the ending)" % pct("acc_norm"))
print("  acc_bytes %.2f ± %.2f   (lm-eval's: / UTF-8 bytes of the ending)" % pct("acc_bytes"))
print("  acc_norm  %.2f ± %.2f   (ctxsparse eval's rule: / UTF-8 bytes of \" \" + ending)" % (100 * p, 100 * math.sqrt(p * (1 - p) / (n - 1))))
print(f"  results: {results[-1]}")
PY
