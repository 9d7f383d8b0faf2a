#!/usr/bin/env bash
# Run the osiris tts actor with Chatterbox in an environment of its own.
#
# chatterbox-tts 0.1.7 pins torch==2.6.0, torchaudio==2.6.0, transformers==5.2.0, numpy<2 ...,
# which cannot share the main environment (hermes/trainer need torch 2.13, transformers 5.23).
# Actors only need NATS to meet, so the tts actor runs here, in its own process, and joins the
# same NATS as every other actor.
#
#   plugins/tts/scripts/chatterbox-env.sh setup            # build the venv (once; needs network)
#   plugins/tts/scripts/chatterbox-env.sh check            # load the engine once, say what is missing
#   plugins/tts/scripts/chatterbox-env.sh run -c tts.toml  # = osiris run --only tts -c tts.toml
#
# Environment: OSIRIS_TTS_VENV (default: <repo>/.venv-tts), PYTHON (default: python3.11),
# CHATTERBOX_VERSION (default: 0.1.7). The checkpoint is never downloaded at run time: put it
# in a folder ([plugins.tts] chatterbox_checkpoint) or in the hub cache beforehand
# (`huggingface-cli download ResembleAI/chatterbox`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
venv="${OSIRIS_TTS_VENV:-$repo/.venv-tts}"
python="${PYTHON:-python3.11}"
version="${CHATTERBOX_VERSION:-0.1.7}"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

setup() {
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # chatterbox first: its pins decide torch/transformers/numpy; osiris core and the tts plugin
  # need none of those, so they install on top without moving a pin.
  "$venv/bin/pip" install -q "chatterbox-tts==$version"
  "$venv/bin/pip" install -q -e "$repo" -e "$repo/plugins/tts"
  "$venv/bin/pip" check
  echo "tts environment ready: $venv"
}

check() {
  HF_HUB_OFFLINE=1 "$venv/bin/python" - "$@" <<'PY'
import sys
from osiris_tts.chatterbox import ChatterboxEngine
from osiris_tts.engine import EngineUnavailable
checkpoint = sys.argv[1] if len(sys.argv) > 1 else ""
try:
    engine = ChatterboxEngine.load(checkpoint)
except EngineUnavailable as e:
    sys.exit(f"chatterbox unavailable: {e}")
pcm = engine.synthesize("Chatterbox is ready.", exaggeration=0.5, ref_wav=None)
print(f"chatterbox ok on {engine.device}: {len(pcm) / 2 / engine.sample_rate:.2f} s of audio "
      f"at {engine.sample_rate} Hz")
PY
}

cmd="${1:-}"; shift || true
case "$cmd" in
  setup) setup ;;
  check) check "$@" ;;
  run)
    [ -x "$venv/bin/osiris" ] || { echo "no tts environment at $venv: run '$0 setup' first" >&2; exit 1; }
    export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
    exec "$venv/bin/osiris" run --only tts "$@" ;;
  -h|--help|help|"") usage ;;
  *) echo "unknown command: $cmd" >&2; usage 2 ;;
esac
