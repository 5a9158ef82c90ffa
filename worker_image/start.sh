#!/usr/bin/env bash
# Entry point of every HyperBatch worker (container or local process).
#
# Runs the setup hook once, then the agent; the agent runs jobs in series and
# exits 0 when it has been idle for the definition's idle timeout. A crashed
# agent (any other exit code) is restarted, up to HYPER_MAX_RESTARTS times in a
# row, so one bad moment does not lose the worker. Exit code 3 means the
# worker is misconfigured: restarting would not help.
set -u

PYTHON="${HYPER_PYTHON:-python3}"
MAX_RESTARTS="${HYPER_MAX_RESTARTS:-5}"
SETUP="${HYPER_SETUP:-/etc/hyperbatch/setup.sh}"

log() { printf '%s start.sh[%s]: %s\n' "$(date -u +%FT%TZ)" "$$" "$*"; }

if [ -x "$SETUP" ]; then
    log "running setup hook $SETUP"
    "$SETUP" || { log "setup hook failed with $?"; exit 1; }
fi

agent_pid=""
stopping=0
# Pass a stop request on to the agent, which hands back its current work.
trap 'log "stop requested"; stopping=1; [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null' TERM INT

restarts=0
while :; do
    "$PYTHON" -m hyperbatch.wiring.worker &
    agent_pid=$!
    wait "$agent_pid"
    code=$?
    # `wait` returns early (code > 128) when a trapped signal arrives: wait for the agent itself.
    while kill -0 "$agent_pid" 2>/dev/null; do wait "$agent_pid"; code=$?; done
    agent_pid=""
    [ "$stopping" = 1 ] && { log "worker stopped"; exit 0; }
    case "$code" in
        0) log "agent idle; worker exits"; exit 0 ;;
        3) log "agent misconfigured; worker exits"; exit 3 ;;
    esac
    restarts=$((restarts + 1))
    if [ "$restarts" -gt "$MAX_RESTARTS" ]; then
        log "agent crashed $restarts times in a row (last exit $code); worker exits"
        exit 1
    fi
    log "agent exited with $code; restart $restarts of $MAX_RESTARTS"
    sleep 1
done
