"""dask-jobqueue's PBSCluster, unmodified, against local mode (issue 10, item 11).

The cluster runs in a process of its own with the daemon's environment, the way a user runs it:
it writes a job script with #PBS directives (-N dask-worker, -l select=1:ncpus=1:mem=..MB,
-l walltime=...), submits two with `qsub`, computes on the two workers, and `close()` runs
`qdel ID` for each. Afterwards no job may be left running.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import BIN, FINAL, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_dask_jobqueue")]

DRIVER = """\
import json, sys
from dask_jobqueue import PBSCluster
from distributed import Client

cluster = PBSCluster(cores=1, processes=1, memory="512MB", walltime="00:05:00")
cluster.scale(jobs=2)
client = Client(cluster)
client.wait_for_workers(2, timeout=90)
total = client.submit(sum, client.map(lambda x: x * x, range(100))).result()
hosts = sorted({{w["id"] for w in client.scheduler_info()["workers"].values()}})
ids = [job.job_id for job in cluster.workers.values()]
client.close()
cluster.close()
print(json.dumps({{"total": total, "workers": len(hosts), "job_ids": ids}}))
"""


def _run_cluster(hb) -> dict:
    driver = hb.workdir / "dask_driver.py"
    driver.write_text(DRIVER.replace("{{", "{").replace("}}", "}"))
    before = {j["id"] for j in hb.jobs()}
    proc = hb.run(BIN / "python", driver, timeout=150, check=False)
    assert proc.returncode == 0, f"the PBSCluster driver failed:\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["total"] == sum(x * x for x in range(100))
    assert result["workers"] == 2  # both worker jobs ran at once (local mode's cap is the CPU count)
    jobs = [j for j in hb.jobs() if j["id"] not in before]
    assert len(jobs) == 2 and {j["name"] for j in jobs} == {"dask-worker"}
    result["jobs"] = jobs
    return result


def _nothing_left_running(hb, jobs: list[dict], timeout: float = 15) -> list[dict]:
    """The worker jobs, once every one of them is final; fails if one is still running after `timeout`."""
    ids = [j["id"] for j in jobs]
    return wait_for(lambda: (found := hb.jobs(*ids)) and all(j["state"] in FINAL for j in found) and found,
                    timeout, what=f"the dask worker jobs {ids} to end after close()")


def test_pbscluster_unmodified_computes_and_close_deletes_its_jobs(hb):
    """dask-jobqueue reads the job id as the first run of digits of what qsub prints (`1234` of
    `1234.host`) and runs `qdel 1234`: the number alone names the job."""
    result = _run_cluster(hb)
    assert sorted(result["job_ids"]) == sorted(j["id"].split(".")[0] for j in result["jobs"]), result["job_ids"]
    for job in _nothing_left_running(hb, result["jobs"]):
        assert job["state"] in ("CANCELLED", "SUCCEEDED"), job
