"""Which workers are gone (hyperbatch.adapters.aws.census): by their Batch job's status or on-premises record."""

from hyperbatch.adapters.aws.census import WorkerCensus, batch_job_of

JOB = "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


def test_a_workers_name_gives_its_batch_job_whatever_its_slot_and_index():
    assert batch_job_of(JOB) == JOB
    assert batch_job_of(f"{JOB}-3") == JOB  # slot 3 of a worker with room for several jobs
    assert batch_job_of(f"{JOB}:17-0") == f"{JOB}:17"  # slot 0 of array child 17
    assert batch_job_of("box-1") is None and batch_job_of("i-0123456789abcdef0") is None


class Batch:
    def __init__(self, statuses, fail=False):
        self.statuses, self.fail, self.asked = statuses, fail, []

    def describe_jobs(self, jobs):
        if self.fail:
            raise RuntimeError("Throttling")
        self.asked.append(list(jobs))
        return {"jobs": [{"jobId": j, "status": self.statuses[j]} for j in jobs if j in self.statuses]}


class Registry:
    def workers(self):
        return [{"name": "lab1", "seen_at": 1000.0}, {"name": "lab2", "seen_at": 500.0}]


def test_only_workers_known_to_have_stopped_are_gone():
    ended, running = JOB, JOB.replace("3f", "4f")
    batch = Batch({f"{ended}:2": "FAILED", running: "RUNNING"})
    census = WorkerCensus(lambda region: batch, Registry(), clock=lambda: 1010.0)
    hosts = {f"us-west-2/{ended}:2-0", f"us-west-2/{ended}:2-1", f"us-west-2/{running}", "us-west-2/box-1",
             f"us-west-2/{JOB.replace('3f', '5f')}",  # Batch no longer lists it: not known to be gone
             "onprem/lab1", "onprem/lab2", "onprem/lab3"}
    assert census.gone(hosts) == {f"us-west-2/{ended}:2-0", f"us-west-2/{ended}:2-1", "onprem/lab2", "onprem/lab3"}


def test_a_region_that_cannot_be_asked_has_no_worker_gone():
    census = WorkerCensus(lambda region: Batch({}, fail=True))
    assert census.gone({f"us-east-1/{JOB}"}) == set()
