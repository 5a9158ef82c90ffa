#!/bin/sh
# One task of the sweep's array: squares the number on its line of `numbers`.
cd "$PBS_O_WORKDIR" || exit 1
n=$(sed -n "${PBS_ARRAY_INDEX}p" numbers)
echo $((n * n)) > "out.$PBS_ARRAY_INDEX"
