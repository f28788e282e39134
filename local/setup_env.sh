#!/usr/bin/env bash
# Create/refresh the project's environment: .venv from requirements.txt (+ this package,
# editable) and the system tools (ffmpeg/ffprobe for musdb/stempeg; fluidsynth and two GM
# soundfonts for the built-in corpus and the MIDI renderer; flite, festival and voices for its sung voice). Idempotent: a stamp skips pip when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
python=${PYTHON:-python3}

need_apt=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v fluidsynth >/dev/null 2>&1 || need_apt+=(fluidsynth)
# the built-in corpus (default_corpus.soundfonts) renders with both GM soundfonts
[ -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need_apt+=(fluid-soundfont-gm)
[ -e /usr/share/sounds/sf2/TimGM6mb.sf2 ] || need_apt+=(timgm6mb-soundfont)
# its sung voice (default_corpus.singer, asteroid_frugal/data/sung_voice.py): recorded speakers of
# speech synthesisers, flite (rms, awb) and festival with these voices (en, it, cs, fi, ca)
command -v flite >/dev/null 2>&1 || need_apt+=(flite)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)          # pip builds pyworld (requirements.txt)
command -v festival >/dev/null 2>&1 || need_apt+=(festival)
for voice in us/cmu_us_slt_arctic_hts:festvox-us-slt-hts english/kal_diphone:festvox-kallpc16k \
             english/ked_diphone:festvox-kdlpc16k italian/lp_diphone:festvox-italp16k \
             italian/pc_diphone:festvox-itapc16k czech/czech_dita:festvox-czech-dita \
             finnish/hy_fi_mv_diphone:festvox-suopuhe-mv catalan/upc_ca_ona_hts:festvox-ca-ona-hts \
             czech/czech_machac:festvox-czech-machac czech/czech_ph:festvox-czech-ph czech/czech_krb:festvox-czech-krb \
             finnish/suo_fi_lj_diphone:festvox-suopuhe-lj; do
  [ -d "/usr/share/festival/voices/${voice%%:*}" ] || need_apt+=("${voice##*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${need_apt[*]}" >&2
    echo "setup: install them first, e.g.: sudo apt-get install ${need_apt[*]}" >&2
    echo "setup: (ffmpeg is required; fluidsynth and the soundfonts for the built-in corpus and MIDI rendering;" >&2
    echo "setup:  flite, festival and the festvox voices for its sung voice, or --set default_corpus.singer=additive)" >&2
    command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || exit 1
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $($python --version 2>&1)"
  "$python" -m venv "$venv"
fi
stamp="$venv/.asteroid_frugal.stamp"
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing Python packages into $venv (first time: a few minutes, ~5 GB with CUDA libraries)"
  pip_q() {  # quiet pip; its output is shown only when it fails
    local log; log=$(mktemp)
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
      cat "$log" >&2; rm -f "$log"
      echo "setup: 'pip install $*' failed (see above)" >&2; exit 1
    fi
    rm -f "$log"
  }
  pip_q --upgrade pip
  pip_q -r requirements.txt
  pip_q --no-deps --no-build-isolation -e .
  venv_abs=$(cd "$venv" && pwd)
  (cd / && "$venv_abs/bin/python" -W ignore -c "import torch, torchaudio, asteroid, pytorch_lightning, musdb, museval, soundfile, asteroid_frugal") \
    && [ -x "$venv/bin/asteroid-frugal-separate" ] \
    || { echo "setup: the environment in $venv is broken (see above)" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
