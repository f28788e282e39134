#!/usr/bin/env bash
# Kaldi-style option parsing: for every `--name value` on the command line, if a shell
# variable `name` is already declared by the calling script, set it to `value`.
# `--help` prints the variables and their current values. Source it after declaring defaults.
while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help|-h)
      echo "Usage: $0 [--name value] ..."; echo "Options (current values):"
      for v in ${__option_names:-}; do printf '  --%-18s %s\n' "$v" "${!v}"; done
      exit 0 ;;
    --*=*)
      name="${1%%=*}"; name="${name#--}"; name="${name//-/_}"; value="${1#*=}"; shift ;;
    --*)
      name="${1#--}"; name="${name//-/_}"
      if [ $# -lt 2 ]; then echo "$0: option --$name needs a value" >&2; exit 1; fi
      value="$2"; shift 2 ;;
    *) break ;;
  esac
  if ! declare -p "$name" >/dev/null 2>&1; then
    echo "$0: unknown option --$name (see --help)" >&2; exit 1
  fi
  printf -v "$name" '%s' "$value"
done
true
