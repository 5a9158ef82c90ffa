#!/bin/bash
#PBS -N flaky
#HYPER --retries 1
# Fails on its first attempt and succeeds on the retry: qstat -f shows run_count 2.
if [ "$HYPER_ATTEMPT" = 1 ]; then
    echo "attempt 1: failing on purpose" >&2
    exit 3
fi
echo "attempt $HYPER_ATTEMPT: fine"
