#!/bin/bash
#PBS -N squares
#PBS -J 1-8
# An array job: each task sees its own index.
i=$PBS_ARRAY_INDEX
echo "task $i: $i squared is $((i * i))"
