#!/bin/bash
# Issue 12 measurement (not a CI test): a 1000-instance launch, stages 1-3, on a sandbox
# with or without its token buckets. usage: benchmarks/token_buckets_launch.sh LABEL [sandbox
# options, e.g. --no-token-buckets]; results under /tmp/life-measure/LABEL (deploy.out: the
# CLI JSON; state.json: the sandbox API counters, throttled = retries taken; conditions: load).
set -u
label=$1; shift
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
PY=${PYTHON:-python}
d=/tmp/life-measure/$label; rm -rf $d; mkdir -p $d
$PY -m sandbox --env-file $d/sandbox.env --state-dir $d/sbstate --install-latency 0.05 --latency-jitter 0.01 \
  --boot-delay 1 --cloud-init-seconds 0.5 --public-ip-cidr 127.150.0.0/16 --service-ip-cidr 127.151.0.0/16 "$@" > $d/sandbox.out 2>&1 &
sbpid=$!
for i in $(seq 120); do grep -q "SANDBOX READY" $d/sandbox.out && break; sleep 1; done
set -a; . $d/sandbox.env; set +a
export TOMCAT_FLEET_STATE_DIR=$d/state TOMCAT_FLEET_LOG_DIR=$d/logs TOMCAT_FLEET_DEPLOYMENT_NAME=m-$label
echo "start $(date -u +%FT%TZ) load $(cat /proc/loadavg)" > $d/conditions
/usr/bin/time -v $PY -m flows deploy --instances 1000 --stages 1-3 > $d/deploy.out 2> $d/deploy.err
echo "rc $?" >> $d/conditions
echo "end $(date -u +%FT%TZ) load $(cat /proc/loadavg)" >> $d/conditions
curl -s $TOMCAT_FLEET_SANDBOX_STATE_URL > $d/state.json
kill $sbpid; wait $sbpid
