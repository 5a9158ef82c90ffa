#!/bin/bash
#PBS -N prepare
# First step of a pipeline: the next step runs only if this one succeeds (afterok).
seq 1 100 > "${PBS_O_WORKDIR:-.}/.demo-numbers"
echo "wrote 100 numbers"
