#!/usr/bin/env bash
# asteroid-frugal: Kaldi/Asteroid-style staged recipe for
# "A frugal approach to music source separation" (original TasNet, target-vs-rest models).
#
#   ./run.sh                                   # whole recipe on the built-in corpus (demo scale)
#   ./run.sh --musdb_root /data/musdb18        # MUSDB18 (.stem.mp4) or MUSDB18-HQ (wav), paper scale
#   ./run.sh --stage 3 --tag vocals            # train (then evaluate, publish) the vocals model
#   ./run.sh --egs egs/table2_excerpt_length --seeds 3   # a whole experiment of the paper (all variants x seeds)
#   ./run.sh --egs egs/table2_excerpt_length --launcher slurm   # the same, one SLURM job per variant x seed (docs/cluster.md)
#
# Stages: 0 data preparation, 1 extra data, 2 training-set shaping, 3 training,
#         4 evaluation (with listenable example stems), 5 publishing.
# Every option below can be given as --name value (see ./run.sh --help).
set -euo pipefail
cd "$(dirname "$0")"

all_targets="vocals drums bass"  # = asteroid_frugal.data.types.TARGETS (tests/test_recipe.py checks)
stage=0               # first stage to run
stop_stage=5          # last stage to run
tag=""                # experiment name (exp/<tag>); default: the target name
target=""             # vocals | drums | bass; default: from --tag, else every name in $targets
targets="$all_targets"  # models trained when neither --tag nor --target is given
conf=conf.yml         # base config: the single source of defaults
overlay=""            # config overlay file(s); default on the built-in corpus: egs/demo/conf.yml egs/demo/vocals.yml
                      # (--egs: egs/demo/conf.yml alone, the variants set their own training)
set=""                # space-separated config overrides, e.g. "training.epochs=5 training.batch_size=2"
musdb_root=""         # MUSDB18 or MUSDB18-HQ root; empty = built-in procedurally generated corpus
musdb_download=no     # yes: musdb's own 7 s sample download (needs internet)
extra_roots=""        # space-separated extra-data folders (<song>/<source>.wav, or Slakh2100 roots)
midi_dirs=""          # space-separated folders of multitrack MIDI files, rendered to stems in stage 1
data_dir=data         # prepared data
exp_dir=exp           # experiments
egs=""                # run every variant of an egs/<experiment> folder, then collect its results
seeds=""              # with --egs: seeds per variant (default: the experiment.yml's, else 3)
launcher=""           # with --egs: local (here, in turn) | slurm (one job per variant x seed; docs/cluster.md)
devices=""            # training devices (Lightning): e.g. 1, 4, auto
num_nodes=""          # training nodes (DDP)
strategy=""           # Lightning strategy: auto, ddp, ...
precision=""          # 32-true | bf16-mixed
target_jobs=auto      # targets trained at once (stages 2-4): auto = one per core (at most all) without a GPU, 1 with one
setup=yes             # create/refresh .venv and system tools before running
python=.venv/bin/python

__option_names="stage stop_stage tag target targets conf overlay set musdb_root musdb_download
 extra_roots midi_dirs data_dir exp_dir egs seeds launcher devices num_nodes strategy precision target_jobs setup python"
cmdline="./run.sh$(printf " %q" "$@")"   # re-runnable as written (train_command.txt)
. utils/parse_options.sh
target_jobs_option=$target_jobs   # as given (the sweep passes it on to each variant)
for v in stage stop_stage; do
  case ${!v} in ''|*[!0-9]*) echo "run.sh: --$v ${!v}: expected a number (stages 0-5)" >&2; exit 1 ;; esac
done

[ "$setup" = yes ] && local/setup_env.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 FRUGAL_RUN_CMD="$cmdline"

if [ -z "$overlay" ] && [ -z "$musdb_root" ] && [ "$musdb_download" != yes ]; then
  overlay=egs/demo/conf.yml
  [ -n "$egs" ] || overlay="$overlay egs/demo/vocals.yml"
  echo "run.sh: no --musdb_root: built-in corpus with the demo configuration ($overlay)"
fi

if [ -z "$target" ] && [ -n "$tag" ]; then
  for s in $all_targets; do [ "$tag" = "$s" ] || [ "${tag%%_*}" = "$s" ] && target=$s; done
  [ -n "$target" ] || { echo "run.sh: cannot tell the target from --tag $tag: add --target ${all_targets// /|}" >&2; exit 1; }
fi
run_targets=${target:-$targets}
for t in $run_targets; do
  case " $all_targets " in *" $t "*) ;; *) echo "run.sh: unknown target '$t' (${all_targets// /, })" >&2; exit 1 ;; esac
done

n_targets=$(echo $run_targets | wc -w)
if [ "$target_jobs" = auto ]; then  # a GPU is shared badly by several trainings; CPU cores are not, but a
  # job per core at most: the longest (the first target, vocals in the demo) keeps a core to itself
  # while the others follow each other on the rest
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then target_jobs=1; else target_jobs=$(nproc); fi
fi
case $target_jobs in ''|*[!0-9]*|0) echo "run.sh: --target_jobs $target_jobs: expected auto or a number >= 1" >&2; exit 1 ;; esac
[ "$target_jobs" -gt "$n_targets" ] && target_jobs=$n_targets
if [ "$stage" -gt 4 ] || [ "$stop_stage" -lt 2 ]; then target_jobs=1; fi  # no per-target stage to run

common=(--conf "$conf" --set "data.root=$data_dir")
for o in $overlay; do common+=(--overlay "$o"); done
[ -n "$musdb_root" ] && common+=(--set "data.musdb_root=$musdb_root")
[ "$musdb_download" = yes ] && common+=(--set "data.musdb_download=true")
if [ -n "$extra_roots" ]; then
  list=$(printf '"%s",' $extra_roots); common+=(--set "data.extra_roots=[${list%,}]")
fi
if [ -n "$midi_dirs" ]; then
  list=$(printf '"%s",' $midi_dirs); common+=(--set "midi_render.midi_dirs=[${list%,}]")
fi
[ -n "$devices" ] && common+=(--set "training.devices=$devices")
[ -n "$num_nodes" ] && common+=(--set "training.num_nodes=$num_nodes")
[ -n "$strategy" ] && common+=(--set "training.strategy=$strategy")
[ -n "$precision" ] && common+=(--set "training.precision=$precision")
for s in $set; do common+=(--set "$s"); done

need_python() {  # before the first stage: a missing interpreter is one line, not bash's "not found"
  command -v "$python" >/dev/null 2>&1 || {
    echo "run.sh: --python $python: not found (run without --setup no to create .venv, or give --python)" >&2; exit 1; }
}

if [ -n "$egs" ]; then  # a whole experiment: every variant and seed, resumable, then its results table.
  # The config arguments above (every option of this script) reach each variant's run.sh unchanged.
  need_python
  exec "$python" local/run_egs.py --egs "$egs" --exp_dir "$exp_dir" --stage "$stage" --stop_stage "$stop_stage" \
    --target_jobs "$target_jobs_option" ${seeds:+--seeds "$seeds"} ${launcher:+--launcher "$launcher"} "${common[@]}"
fi

if [ -n "$tag" ] && [ "$stage" -ge 4 ] && [ ! -d "$exp_dir/$tag" ]; then  # nothing trains it in this run
  known=""  # (a glob, not ls: no exp_dir or no sub-folder must not end the script under set -e)
  for d in "$exp_dir"/*/; do if [ -d "$d" ]; then d=${d%/}; known+="${d##*/} "; fi; done; known=${known% }
  echo "run.sh: $exp_dir/$tag: no such experiment (mistyped --tag? existing: ${known:-none})" >&2; exit 1
fi
need_python
# Another run's stage holds an experiment this run writes (asteroid_frugal/lock.py: flock on <exp>/.lock):
# refuse now, in one line, before this run's output goes into the logs that run is writing.
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 2 ] && command -v flock >/dev/null 2>&1; then
  for t in $run_targets combined; do
    [ "$t" != combined ] || [ -z "$tag" ] || continue
    lock=$exp_dir/${tag:-$t}/.lock
    if [ -f "$lock" ] && ! flock -n -s "$lock" true 2>/dev/null; then
      holder=$("$python" -c 'import json, sys
h = json.loads(open(sys.argv[1]).readline())
print("pid %s on host %s since %s (%s: %s)" % (h["pid"], h["host"], h["started"], h["what"], h["command"]))' "$lock" 2>/dev/null) \
        || holder="another run (see $lock)"
      echo "run.sh: $exp_dir/${tag:-$t} is in use by $holder; wait for it to finish or stop it" >&2; exit 1
    fi
  done
fi
log_dir=$exp_dir/${tag:-recipe}
new_log_dir=no; [ -d "$log_dir" ] || new_log_dir=yes
new_exp_dir=no; [ -d "$exp_dir" ] || new_exp_dir=yes
mkdir -p "$log_dir"
# a failed run leaves no folder of its own that holds nothing but its log (e.g. a mistyped --tag)
trap 'rc=$?; if [ $rc -ne 0 ] && [ $new_log_dir = yes ] && [ -z "$(ls -A "$log_dir" | grep -vx run.log)" ]; then
  rm -rf "$log_dir"; [ $new_exp_dir = no ] || rmdir "$exp_dir" 2>/dev/null || true; fi' EXIT
exec > >(tee -a "$log_dir/run.log") 2>&1
echo "run.sh $(date '+%F %T'): stages $stage..$stop_stage, targets: $run_targets"

run_stage() {  # run_stage N "description" script args...
  local n=$1 what=$2 script=$3; shift 3
  echo "== stage $n ($what)"
  local rc=0
  "$python" "$script" "$@" || rc=$?
  # a stage prints its own error; one killed by a signal (out of memory, kill) could not
  if [ $rc -gt 128 ]; then echo "run.sh: stage $n ($what) killed by signal $((rc - 128))" >&2; fi
  [ $rc -eq 0 ] || exit $rc
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  run_stage 0 "data preparation" local/prepare_data.py "${common[@]}"
fi
if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  run_stage 1 "extra data" local/prepare_extra.py "${common[@]}"
fi
target_stages() {  # stages 2-4 of one target: target_stages TARGET [config arguments...]
  local t=$1; shift
  local t_tag=${tag:-$t}
  local t_args=("${common[@]}" "$@" --set "data.target=$t" --exp_dir "$exp_dir/$t_tag")
  if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    run_stage 2 "training-set shaping, $t_tag" local/shape_trainset.py "${t_args[@]}"
  fi
  if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    run_stage 3 "training, $t_tag" local/train.py "${t_args[@]}"
  fi
  if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    run_stage 4 "evaluation {1}, $t_tag" local/evaluate.py "${t_args[@]}"
  fi
}
if [ "$target_jobs" -le 1 ]; then
  for t in $run_targets; do target_stages "$t"; done
else
  # Each target's stages in its own background job, its output in $log_dir/<target>.log, with
  # an explicit thread count (cores / jobs, at least 1) and passive OpenMP waiting: jobs started
  # together would each see an idle machine (runtime "auto") and oversubscribe it. Unless the
  # command line sets them. A job's result depends on its thread count (runtime.py), so a run
  # with --target_jobs 1 gives other (equally valid) figures.
  per_job=(); threads=$(( $(nproc) / target_jobs )); [ "$threads" -ge 1 ] || threads=1
  case " $set " in *" runtime.threads="*) ;; *) per_job+=(--set "runtime.threads=$threads") ;; esac
  case " $set " in *" runtime.omp_wait_policy="*) ;; *) per_job+=(--set "runtime.omp_wait_policy=passive") ;; esac
  echo "== stages 2-4 of $run_targets: $target_jobs at a time, ${per_job[*]:-as set}; logs: $log_dir/<target>.log"
  pids=(); names=(); failed=""
  for t in $run_targets; do
    while [ "$(jobs -rp | wc -l)" -ge "$target_jobs" ]; do sleep 2; done
    ( target_stages "$t" "${per_job[@]}" ) > "$log_dir/${tag:-$t}.log" 2>&1 &
    pids+=($!); names+=("${tag:-$t}")
  done
  progress() {  # one status line: each target's stage and epoch, from its log
    local line="" n
    for n in "${names[@]}"; do
      local f=$log_dir/$n.log st ep
      st=$(grep -a "^== stage" "$f" 2>/dev/null | tail -1 | sed 's/^== stage \([0-9]\).*/stage \1/' || true)
      ep=$(tail -c 2000 "$f" 2>/dev/null | tr '\r' '\n' | grep -ao "^Epoch [0-9]*" | tail -1 | sed 's/Epoch //' || true)
      line+="$n: ${st:-waiting}${ep:+, epoch $((ep + 1))}  "
    done
    echo "   $(date '+%T') $line"
  }
  ticks=0
  while [ -n "$(jobs -rp)" ]; do
    sleep 2; ticks=$((ticks + 1))
    if [ $((ticks % 15)) -eq 0 ] && [ -n "$(jobs -rp)" ]; then progress; fi
  done
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      failed+=" ${names[$i]}"
      echo "run.sh: target ${names[$i]} failed; the end of $log_dir/${names[$i]}.log:" >&2
      tail -n 5 "$log_dir/${names[$i]}.log" | tr '\r' '\n' | tail -n 5 >&2
    fi
  done
  for n in "${names[@]}"; do grep -a "INFO .*\(best val_loss\|results in\)" "$log_dir/$n.log" | sed "s/^/   $n: /" || true; done
  [ -z "$failed" ] || { echo "run.sh: failed:$failed (re-run the same command to resume)" >&2; exit 1; }
fi
if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ] && [ -z "$tag" ] && [ "$run_targets" = "$all_targets" ]; then
  combined=(); for t in $all_targets; do combined+=("$exp_dir/$t"); done
  run_stage 4 "evaluation {4}, ${all_targets// /+}" local/evaluate.py "${common[@]}" \
    --combined "${combined[@]}" --exp_dir "$exp_dir/combined"
fi
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  for t in $run_targets; do
    run_stage 5 "publishing, ${tag:-$t}" local/publish.py "${common[@]}" --exp_dir "$exp_dir/${tag:-$t}"
  done
fi
echo "run.sh $(date '+%F %T'): done"
