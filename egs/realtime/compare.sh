#!/usr/bin/env bash
# Causal (real-time) vs bidirectional TasNet on the same data and budget, then docs/realtime.md.
#
#   egs/realtime/compare.sh                                   # demo scale, vocals, built-in corpus
#   egs/realtime/compare.sh --musdb_root /data/musdb18        # any run.sh option is passed to both runs
#   TARGET=drums OVERLAY= egs/realtime/compare.sh --musdb_root /data/musdb18   # paper scale, drums
#
# Both models go through run.sh's stages 0-4 into $EXP_DIR/<target>_blstm and
# $EXP_DIR/<target>_causal (finished stages are skipped: re-running resumes).
set -euo pipefail
cd "$(dirname "$0")/../.."
exp_dir=${EXP_DIR:-exp/realtime_demo}
target=${TARGET:-vocals}
overlay=${OVERLAY-egs/demo/conf.yml}
./run.sh --target "$target" --tag "${target}_blstm" --exp_dir "$exp_dir" --overlay "$overlay" --stop_stage 4 "$@"
./run.sh --target "$target" --tag "${target}_causal" --exp_dir "$exp_dir" --overlay "$overlay egs/realtime/conf.yml" \
  --stage 2 --stop_stage 4 "$@"
.venv/bin/python docs/make_realtime.py "$exp_dir/${target}_blstm" "$exp_dir/${target}_causal"
