#!/bin/bash
#PBS -N broken
#HYPER --retries 0
# Always fails: its exit status and reason show in qstat -f.
echo "cannot find input.dat" >&2
exit 2
