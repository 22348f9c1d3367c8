#!/usr/bin/env bash
# Image entrypoint.
#   worker [args]        a Prefect worker on $TOMCAT_FLEET_WORK_POOL (default tomcat-fleet-docker)
#   deploy|install|install-tomcat|teardown|benchmark [args]
#                        one flow run (tomcat-fleet <command> args), output also in $TOMCAT_FLEET_LOG_DIR
#   anything else        run as given (the Docker worker's `prefect flow-run execute`, a shell)
set -euo pipefail
mkdir -p "${TOMCAT_FLEET_LOG_DIR:?}" "${TOMCAT_FLEET_STATE_DIR:?}"
case "${1:-worker}" in
  worker)
    [ $# -gt 0 ] && shift
    exec prefect worker start --pool "${TOMCAT_FLEET_WORK_POOL:-tomcat-fleet-docker}" "$@" ;;
  deploy|install|install-tomcat|teardown|benchmark)
    command="${1%-tomcat}"
    shift
    log="${TOMCAT_FLEET_LOG_DIR}/${command}-$(date -u +%Y%m%dT%H%M%SZ).log"
    python -m flows "$command" "$@" 2>&1 | tee -a "$log"
    exit "${PIPESTATUS[0]}" ;;
  *)
    exec "$@" ;;
esac
