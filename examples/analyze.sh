#!/bin/bash
#PBS -N analyze
# Second step: sums what prepare.sh wrote.
numbers="${PBS_O_WORKDIR:-.}/.demo-numbers"
echo "sum of 1..100 is $(awk '{ s += $1 } END { print s }' "$numbers")"
rm -f "$numbers"
