#!/bin/bash
#PBS -N hello
#PBS -l walltime=00:05:00
#PBS -v GREETING=Hello
# A first job: directives in the header, like qsub reads them.
echo "$GREETING from job $PBS_JOBID (attempt $HYPER_ATTEMPT) on $(hostname)"
echo "submitted from $PBS_O_WORKDIR, running in $(pwd)"
