#!/usr/bin/env bash
# Regenerate sample_data/fhir_r4/ from scratch with the pinned clinosim release.
#
# Usage:  sample_data/regenerate.sh [DEST_DIR]
#   DEST_DIR defaults to the fhir_r4/ folder next to this script. It is
#   deleted and recreated, and gets only the kept resource types.
#
# Needs: python3 (tested with 3.11) with venv, and access to PyPI.
# Everything else (venv, simulator output) goes in a temp dir that is removed
# on exit. Check the result with:  (cd sample_data && sha256sum -c SHA256SUMS)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="${1:-$SCRIPT_DIR/fhir_r4}"
PYTHON="${PYTHON:-python3}"

CLINOSIM_VERSION="0.6.5"
SEED=7
POPULATION=300
COUNTRY=US
START=2024-01-01
END=2024-12-31
KEEP_TYPES=(Patient Coverage Encounter Condition Organization)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/careloom-sample.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# The simulator's dependencies are pinned too (versions resolved with
# clinosim 0.6.5 on Python 3.11, Nov 2026), because the random streams can
# depend on the numpy/scipy versions.
cat > "$WORK/constraints.txt" <<'EOF'
annotated-types==0.8.0
anyio==4.16.0
certifi==2026.10.19.post1
h11==0.16.0
httpcore==1.0.9
httpx==0.28.1
idna==3.20
mpmath==1.4.1
numpy==2.4.6
pydantic==2.14.4
pydantic_core==2.50.5
PyYAML==6.0.4
scipy==1.17.1
typing-inspection==0.4.5
typing_extensions==4.16.0
EOF

echo "==> creating venv in $WORK/venv"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet "clinosim==$CLINOSIM_VERSION" -c "$WORK/constraints.txt"

echo "==> running clinosim $CLINOSIM_VERSION (seed=$SEED, population=$POPULATION)"
(
  cd "$WORK"
  "$WORK/venv/bin/clinosim" simulate --country "$COUNTRY" -p "$POPULATION" -s "$SEED" \
    --start "$START" --end "$END" -o "$WORK/clino_out" --format fhir-r4
)

echo "==> copying ${KEEP_TYPES[*]} to $DEST"
rm -rf "$DEST"
mkdir -p "$DEST"
for t in "${KEEP_TYPES[@]}"; do
  cp "$WORK/clino_out/fhir_r4/$t.ndjson" "$DEST/$t.ndjson"
done

( cd "$DEST" && wc -l -c ./*.ndjson )
echo "==> done"
