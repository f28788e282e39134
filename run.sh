#!/usr/bin/env bash
# asteroid-frugal: Kaldi/Asteroid-style staged recipe for
# "A frugal approach to music source separation" (original TasNet, target-vs-rest models).
#
#   ./run.sh                                   # whole recipe on the built-in corpus (demo scale)
#   ./run.sh --musdb_root /data/musdb18        # MUSDB18 (.stem.mp4) or MUSDB18-HQ (wav), paper scale
#   ./run.sh --stage 3 --tag vocals            # train (then evaluate, publish) the vocals model
#   ./run.sh --egs egs/table2_excerpt_length --seeds 3   # a whole experiment of the paper (all variants x seeds)
#
# Stages: 0 data preparation, 1 extra data, 2 training-set shaping, 3 training,
#         4 evaluation (with listenable example stems), 5 publishing.
# Every option below can be given as --name value (see ./run.sh --help).
set -euo pipefail
cd "$(dirname "$0")"

all_targets="vocals drums bass"  # = asteroid_frugal.data.types.TARGETS (tests/test_config_and_recipe.py checks)
stage=0               # first stage to run
stop_stage=5          # last stage to run
tag=""                # experiment name (exp/<tag>); default: the target name
target=""             # vocals | drums | bass; default: from --tag, else every name in $targets
targets="$all_targets"  # models trained when neither --tag nor --target is given
conf=conf.yml         # base config: the single source of defaults
overlay=""            # config overlay file(s); default: egs/demo/conf.yml on the built-in corpus
set=""                # space-separated config overrides, e.g. "training.epochs=5 training.batch_size=2"
musdb_root=""         # MUSDB18 or MUSDB18-HQ root; empty = built-in procedurally generated corpus
musdb_download=no     # yes: musdb's own 7 s sample download (needs internet)
extra_roots=""        # space-separated extra-data folders (<song>/<source>.wav, or Slakh2100 roots)
midi_dirs=""          # space-separated folders of multitrack MIDI files, rendered to stems in stage 1
data_dir=data         # prepared data
exp_dir=exp           # experiments
egs=""                # run every variant of an egs/<experiment> folder, then collect its results
seeds=""              # with --egs: seeds per variant (default: the experiment.yml's, else 3)
devices=""            # training devices (Lightning): e.g. 1, 4, auto
num_nodes=""          # training nodes (DDP)
strategy=""           # Lightning strategy: auto, ddp, ...
precision=""          # 32-true | bf16-mixed
setup=yes             # create/refresh .venv and system tools before running
python=.venv/bin/python

__option_names="stage stop_stage tag target targets conf overlay set musdb_root musdb_download
 extra_roots midi_dirs data_dir exp_dir egs seeds devices num_nodes strategy precision setup python"
cmdline="./run.sh $*"
. utils/parse_options.sh

[ "$setup" = yes ] && local/setup_env.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 FRUGAL_RUN_CMD="$cmdline"

if [ -z "$overlay" ] && [ -z "$musdb_root" ] && [ "$musdb_download" != yes ]; then
  overlay=egs/demo/conf.yml
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

if [ -n "$egs" ]; then  # a whole experiment: every variant and seed, resumable, then its results table.
  # The config arguments above (every option of this script) reach each variant's run.sh unchanged.
  exec "$python" local/run_egs.py --egs "$egs" --exp_dir "$exp_dir" --stage "$stage" --stop_stage "$stop_stage" \
    ${seeds:+--seeds "$seeds"} "${common[@]}"
fi

if [ -n "$tag" ] && [ "$stage" -ge 4 ] && [ ! -d "$exp_dir/$tag" ]; then  # nothing trains it in this run
  known=$(cd "$exp_dir" 2>/dev/null && ls -d */ 2>/dev/null | tr -d / | tr '\n' ' ')
  echo "run.sh: $exp_dir/$tag: no such experiment (mistyped --tag? existing: ${known:-none})" >&2; exit 1
fi
log_dir=$exp_dir/${tag:-recipe}
new_log_dir=no; [ -d "$log_dir" ] || new_log_dir=yes
mkdir -p "$log_dir"
# a failed run leaves no folder of its own that holds nothing but its log (e.g. a mistyped --tag)
trap 'rc=$?; if [ $rc -ne 0 ] && [ $new_log_dir = yes ] && [ -z "$(ls -A "$log_dir" | grep -vx run.log)" ]; then
  rm -rf "$log_dir"; fi' EXIT
exec > >(tee -a "$log_dir/run.log") 2>&1
echo "run.sh $(date '+%F %T'): stages $stage..$stop_stage, targets: $run_targets"

run_stage() {  # run_stage N "description" script args...
  local n=$1 what=$2 script=$3; shift 3
  echo "== stage $n ($what)"
  "$python" "$script" "$@"
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  run_stage 0 "data preparation" local/prepare_data.py "${common[@]}"
fi
if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  run_stage 1 "extra data" local/prepare_extra.py "${common[@]}"
fi
for t in $run_targets; do
  t_tag=${tag:-$t}
  t_args=("${common[@]}" --set "data.target=$t" --exp_dir "$exp_dir/$t_tag")
  if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    run_stage 2 "training-set shaping, $t_tag" local/shape_trainset.py "${t_args[@]}"
  fi
  if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    run_stage 3 "training, $t_tag" local/train.py "${t_args[@]}"
  fi
  if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    run_stage 4 "evaluation {1}, $t_tag" local/evaluate.py "${t_args[@]}"
  fi
done
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
