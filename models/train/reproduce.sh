#!/bin/sh
# Rebuilds models/ct-denoise.h5, models/mr-denoise.h5, their metrics
# (models/train/results-*.json, /provenance heldout_*) and
# tests/data/denoise_ref.h5. See models/README.md.
#
#   CLARA_RECON_LIB=/path/to/libclara-recon.so sh models/train/reproduce.sh
set -eu
cd "$(dirname "$0")/../.."
: "${CLARA_RECON_LIB:?set CLARA_RECON_LIB to the built libclara-recon.so}"
export CLARA_RECON_LIB
PYTHONPATH="$PWD/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
C="${CACHE_DIR:-/tmp/clara-denoise}"
T=models/train

python3 $T/train.py --modality ct --out "$C/ct.pt" --iters 5000 --max-minutes 26 --cache-dir "$C"
python3 $T/export.py "$C/ct.pt" models/ct-denoise.h5
python3 $T/train.py --modality mr --out "$C/mr.pt" --iters 4500 --max-minutes 24 --cache-dir "$C"
python3 $T/export.py "$C/mr.pt" models/mr-denoise.h5
python3 $T/evaluate.py --modality ct --model models/ct-denoise.h5 --json $T/results-ct.json --update-model --cache-dir "$C"
python3 $T/evaluate.py --modality mr --model models/mr-denoise.h5 --json $T/results-mr.json --update-model --cache-dir "$C"
python3 $T/make_reference.py --cache-dir "$C"
python3 $T/report.py
