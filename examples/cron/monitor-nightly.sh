#!/usr/bin/env bash
# Nightly monitoring: score the newest batch in $SPARSECHECK_BATCH_DIR against the reference run.
#
#   SPARSECHECK_CONFIG        the run's config (model, data settings, assertions, mlflow.experiment)
#   SPARSECHECK_BATCH_DIR     where new batches land (.npz: x, optional y and id); the newest is scored
#   SPARSECHECK_OUT_ROOT      monitor.html and monitor.json go to OUT_ROOT/YYYY-MM-DD (default ./monitoring)
#   SPARSECHECK_TRACKING_URI  the MLflow tracking server (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)
#   SPARSECHECK_ALERT_COMMAND run with monitor.json's path when the batch drifted or an assertion failed
#
# Exits with sparsecheck monitor's code: 0 no alert, 1 alert, 2 bad input, 3 could not finish
# (an unreachable tracking server is retried first). A batch an earlier night already scored is
# not scored again: the MLflow run that covers it is reported.
set -uo pipefail

config=${SPARSECHECK_CONFIG:?set SPARSECHECK_CONFIG to the sparsecheck config}
batch_dir=${SPARSECHECK_BATCH_DIR:?set SPARSECHECK_BATCH_DIR to the folder new batches land in}
out_root=${SPARSECHECK_OUT_ROOT:-monitoring}

batch=$(ls -t -- "$batch_dir"/*.npz 2>/dev/null | head -n 1)
if [ -z "$batch" ]; then
  echo "$(date -Is) no batch in $batch_dir" >&2
  exit 2
fi
out="$out_root/$(date +%F)"
args=(monitor "$config" --batch "$batch" --out "$out")
if [ -n "${SPARSECHECK_TRACKING_URI:-}" ]; then
  args+=(--tracking-uri "$SPARSECHECK_TRACKING_URI")
fi

echo "$(date -Is) scoring $batch"
sparsecheck "${args[@]}"
code=$?
case $code in
  0) echo "$(date -Is) no alert ($out/monitor.json)" ;;
  1) echo "$(date -Is) ALERT ($out/monitor.json)"
     if [ -n "${SPARSECHECK_ALERT_COMMAND:-}" ]; then
       "$SPARSECHECK_ALERT_COMMAND" "$out/monitor.json" || echo "$(date -Is) the alert command failed" >&2
     fi ;;
  *) echo "$(date -Is) sparsecheck monitor could not finish (exit $code)" >&2 ;;
esac
exit $code
