"""The placement rules (hyperbatch.core.resources): what fits, no overcommit, priority without
starvation, GPU assignment, queue defaults and limits."""

import pytest

from hyperbatch.core.errors import PBSE_EXCQRESC, SpecError
from hyperbatch.core.options import resource_list
from hyperbatch.core.resources import (
    Amount, Candidate, assign_gpus, format_size, limits_of, pick, request_of, route, with_defaults,
)

GB = 1 << 30


def test_a_request_reads_the_resource_list_and_defaults_to_one_cpu():
    assert request_of(resource_list({})) == Amount(1, 0, 0)
    assert request_of(resource_list({"select": "1:ncpus=4:mem=2gb:ngpus=1"})) == Amount(4, 2 * GB, 1)
    assert request_of(resource_list({"ncpus": 2, "mem": "512mb"})) == Amount(2, 512 << 20, 0)


@pytest.mark.parametrize("request_, free, fits", [
    (Amount(1), Amount(2, 8 * GB, 0), True),
    (Amount(2), Amount(2, 8 * GB, 0), True),
    (Amount(3), Amount(2, 8 * GB, 0), False),
    (Amount(1, 0, 1), Amount(2, 8 * GB, 0), False),  # no GPU free
    (Amount(1, 4 * GB), Amount(2, 2 * GB), False),
    (Amount(1, 4 * GB), Amount(2, 0), True),  # memory the machine does not count
    (Amount(1, 1), Amount(2, 8 * GB).minus(Amount(1, 8 * GB)), False),  # all memory taken: nothing asking for some fits
    (Amount(1, 0), Amount(2, 8 * GB).minus(Amount(1, 8 * GB)), True),
])
def test_fits(request_, free, fits):
    assert request_.fits(free) is fits


def test_no_overcommit_two_two_cpu_jobs_do_not_share_two_cpus():
    machine = Amount(2, 8 * GB, 0)
    queued = [Candidate("a", Amount(2), 0.0), Candidate("b", Amount(2), 0.0)]
    first = pick(queued, machine, 60)
    assert first.key == "a"
    assert pick(queued[1:], machine.minus(first.request), 60) is None


def test_small_jobs_backfill_around_a_big_one_that_has_not_waited_long():
    free = Amount(1, 8 * GB, 0)
    queued = [Candidate("big", Amount(2), 5.0), Candidate("small", Amount(1), 1.0)]
    assert pick(queued, free, starve_after=60).key == "small"


def test_a_starving_big_job_holds_the_freed_cpus_until_it_fits():
    queued = [Candidate("big", Amount(2), 61.0), Candidate("small", Amount(1), 1.0)]
    assert pick(queued, Amount(1, 8 * GB, 0), starve_after=60) is None  # the free core stays free for it
    assert pick(queued, Amount(2, 8 * GB, 0), starve_after=60).key == "big"


def test_a_job_larger_than_the_whole_machine_reserves_nothing():
    queued = [Candidate("huge", Amount(64), 999.0), Candidate("small", Amount(1), 1.0)]
    assert pick(queued, Amount(1, 0, 0), 60, total=Amount(2, 0, 0)).key == "small"


def test_higher_priority_comes_first_in_the_order_given():
    queued = [Candidate("urgent", Amount(1), 0.0), Candidate("old", Amount(1), 100.0)]
    assert pick(queued, Amount(1, 0, 0), 60).key == "urgent"


def test_work_of_another_queue_that_fits_is_left_to_its_workers_but_a_starving_one_blocks():
    free = Amount(2, 0, 0)
    assert pick([Candidate("theirs", Amount(1), 0.0, mine=False), Candidate("mine", Amount(1), 0.0)],
                free, 60).key == "mine"
    assert pick([Candidate("theirs", Amount(4), 99.0, mine=False), Candidate("mine", Amount(1), 0.0)],
                free, 60) is None


def test_gpus_are_given_lowest_first_and_never_more_than_free():
    assert assign_gpus(["3", "1", "10", "2"], 2) == ["1", "2"]
    assert assign_gpus(["0"], 0) == []
    with pytest.raises(ValueError):
        assign_gpus(["0"], 2)


def test_queue_defaults_fill_only_what_the_job_did_not_ask():
    defaults = {"ncpus": 2, "mem": "1gb"}
    assert with_defaults({}, defaults) == {"ncpus": 2, "mem": "1gb"}
    assert with_defaults({"ncpus": 4}, defaults) == {"ncpus": 4, "mem": "1gb"}
    # A select chunk names its own: the default ncpus does not clash with it.
    assert request_of(resource_list(with_defaults({"select": "1:ncpus=1"}, defaults))) == Amount(1, GB, 0)


def test_a_request_over_what_the_queue_offers_is_refused_naming_the_most_it_runs():
    offer = Amount(2, 8 * GB, 0)
    route(Amount(2, 8 * GB), "batch", {}, [("", offer)])
    with pytest.raises(SpecError) as caught:
        route(Amount(64), "batch", {}, [("", offer)])
    assert caught.value.pbs_errno == PBSE_EXCQRESC
    assert str(caught.value) == ("Job exceeds queue resource limits: ncpus=64 asked, and queue batch runs jobs of "
                                 "at most ncpus=2,mem=8gb,ngpus=0")
    with pytest.raises(SpecError, match="ngpus=1 asked"):
        route(Amount(1, 0, 1), "batch", {}, [("", offer)])
    with pytest.raises(SpecError, match="mem=16gb asked"):
        route(Amount(1, 16 * GB), "batch", {}, [("", offer)])


def test_max_resources_lower_what_a_queue_runs():
    limits = limits_of({"ncpus": 1, "mem": "1gb"})
    assert limits == {"ncpus": 1, "mem": GB}
    with pytest.raises(SpecError, match="ncpus=2 asked, and queue small runs jobs of at most ncpus=1,mem=1gb"):
        route(Amount(2), "small", limits, [("", Amount(2, 8 * GB, 0))])
    # Memory a worker does not count is still capped by the queue's limit.
    with pytest.raises(SpecError, match="mem=2gb asked"):
        route(Amount(1, 2 * GB), "small", limits, [("", Amount(2, 0, 0))])


def test_sizes_print_in_the_largest_whole_unit():
    assert [format_size(n) for n in (8 * GB, 1536 << 20, 100, 2048)] == ["8gb", "1536mb", "100b", "2kb"]


SIZES = [("standard", Amount(1, 2 * GB, 0)), ("large", Amount(4, 16 * GB, 0)), ("gpu", Amount(4, 16 * GB, 1))]


@pytest.mark.parametrize("request_, size", [
    (Amount(1), "standard"), (Amount(2), "large"), (Amount(1, 4 * GB), "large"), (Amount(1, 0, 1), "gpu"),
    (Amount(4, 16 * GB), "large"),
])
def test_a_job_goes_to_the_smallest_size_that_fits(request_, size):
    assert route(request_, "batch", {}, SIZES) == size


def test_no_size_fitting_names_every_size_and_the_queue_limit_lowers_them():
    with pytest.raises(SpecError) as caught:
        route(Amount(4, 0, 2), "batch", {}, SIZES)
    assert str(caught.value) == ("Job exceeds queue resource limits: ngpus=2 asked, and queue batch runs jobs of at most "
                                 "ncpus=1,mem=2gb,ngpus=0 or ncpus=4,mem=16gb,ngpus=0 or ncpus=4,mem=16gb,ngpus=1")
    assert route(Amount(2), "batch", {"ncpus": 2}, SIZES) == "large"
    with pytest.raises(SpecError, match="ncpus=3 asked"):
        route(Amount(3), "batch", {"ncpus": 2}, SIZES)
