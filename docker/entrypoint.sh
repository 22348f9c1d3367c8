#!/usr/bin/env bash
# Image entrypoint. The image is the flow-run image of the tomcat-fleet-docker pool: the
# Docker worker runs on a host with a Docker engine, not in here (docs/deployments.md).
#   help                 what the image runs (the default command)
#   worker               refused with one line saying where the worker runs
#   deploy|install|install-tomcat|teardown|status|benchmark [args]
#                        one flow run (tomcat-fleet <command> args), output also in $TOMCAT_FLEET_LOG_DIR
#   anything else        run as given (the Docker worker's `prefect flow-run execute`, a shell)
set -euo pipefail
mkdir -p "${TOMCAT_FLEET_LOG_DIR:?}" "${TOMCAT_FLEET_STATE_DIR:?}"
case "${1:-help}" in
  help|--help|-h)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0 ;;
  worker)
    echo "tomcat-fleet: this is the flow-run image; run the worker on a Docker host: pip install prefect-docker && prefect worker start --pool ${TOMCAT_FLEET_WORK_POOL:-tomcat-fleet-docker}" >&2
    exit 2 ;;
  deploy|install|install-tomcat|teardown|status|benchmark)
    command="${1%-tomcat}"
    shift
    log="${TOMCAT_FLEET_LOG_DIR}/${command}-$(date -u +%Y%m%dT%H%M%SZ).log"
    python -m flows "$command" "$@" 2>&1 | tee -a "$log"
    exit "${PIPESTATUS[0]}" ;;
  *)
    exec "$@" ;;
esac
