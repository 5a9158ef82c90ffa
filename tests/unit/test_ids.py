"""Job ids as PBS prints them, and the blocks of sequence numbers they come from."""

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperbatch.core import ids
from hyperbatch.core.errors import NotFound, SpecError
from hyperbatch.core.ids import SequenceBlocks, format_id, parse_job_ref, valid_job_id


# ---- formatting ---------------------------------------------------------------------------------

def test_format_like_pbs():
    assert format_id("1234", "hyperbatch") == "1234.hyperbatch"
    assert format_id("1234", "hyperbatch", array=True) == "1234[].hyperbatch"
    assert format_id("1234", "hyperbatch", index=7) == "1234[7].hyperbatch"
    assert format_id("1234", "hyperbatch", array=True, index=0) == "1234[0].hyperbatch"
    assert format_id("1234", "") == "1234"  # a job stored without a server name


def test_display_id_of_documents():
    job = {"id": "12", "server": "login1", "array": None}
    array = {"id": "13", "server": "login1", "array": "1-10"}
    assert ids.display_id(job) == "12.login1"
    assert ids.display_id(array) == "13[].login1"
    assert ids.display_id(array, 4) == "13[4].login1"


def test_sort_keys_sort_by_number():
    made = ["9", "10", "123", "1000000000", "999999999999"]
    assert sorted(made, key=ids.sort_key) == made
    assert [ids.from_sort_key(ids.sort_key(i)) for i in made] == made
    assert ids.sort_key("42") == "000000000042"


def test_consecutive():
    assert ids.consecutive(["7", "8", "9"])
    assert ids.consecutive(["7"])
    assert not ids.consecutive(["7", "9"]) and not ids.consecutive(["8", "7"]) and not ids.consecutive([])
    assert not ids.consecutive(["07", "8"])


@pytest.mark.parametrize("text", ["1", "1234", "999999999999"])
def test_valid_ids(text):
    assert valid_job_id(text)


@pytest.mark.parametrize("text", ["", "0", "01", "1234.server", "12a", "1000000000000", " 12", None, 12])
def test_invalid_ids(text):
    assert not valid_job_id(text)


# ---- parsing what users type ------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, seq, index, array, server",
    [
        ("1234", "1234", None, False, None),
        ("1234.hyperbatch", "1234", None, False, "hyperbatch"),
        ("1234[]", "1234", None, True, None),
        ("1234[].hyperbatch", "1234", None, True, "hyperbatch"),
        ("1234[7]", "1234", 7, False, None),
        ("1234[0].login1.example.com", "1234", 0, False, "login1.example.com"),
        ("  1234[3] ", "1234", 3, False, None),
        ("001234", "1234", None, False, None),
    ],
)
def test_parse_every_form(text, seq, index, array, server):
    ref = parse_job_ref(text)
    assert (ref.seq, ref.index, ref.array, ref.server) == (seq, index, array, server)


@pytest.mark.parametrize("text", ["x", "12a", "123.", "1234[", "1234[-1]", "1234[a]", "1234[1][2]", "0", "",
                                  "1234[1-5]", "1234.server[]", "1234567890123", "abc.server"])
def test_parse_rejects_like_pbs(text):
    with pytest.raises(ids.IllegalJobId) as err:
        parse_job_ref(text)
    assert str(err.value) == f"illegally formed job identifier: {text}"
    assert isinstance(err.value, SpecError)


def test_expanded_appends_the_server_only_when_missing():
    assert parse_job_ref("12").expanded("login1") == "12.login1"
    assert parse_job_ref("12[]").expanded("login1") == "12[].login1"
    assert parse_job_ref("12[3]").expanded("login1") == "12[3].login1"
    assert parse_job_ref("12.other").expanded("login1") == "12.other"
    assert parse_job_ref("12").expanded("") == "12"


def test_the_server_part_must_name_this_server():
    assert parse_job_ref("12.login1", "login1").seq == "12"
    assert parse_job_ref("12.LOGIN1.example.com", "login1").seq == "12"  # FQDN and case do not matter
    assert parse_job_ref("12.HyperBatch", "HyperBatch").seq == "12"
    with pytest.raises(NotFound) as err:
        parse_job_ref("12.elsewhere", "login1")
    assert str(err.value) == "Unknown Job Id 12.elsewhere"


@given(st.integers(min_value=1, max_value=ids.MAX_SEQUENCE), st.integers(min_value=0, max_value=10**9))
def test_round_trip(seq, index):
    for text, want in ((format_id(str(seq), "srv"), None), (format_id(str(seq), "srv", index=index), index)):
        ref = parse_job_ref(text, "srv")
        assert (ref.seq, ref.index) == (str(seq), want)


# ---- sequence blocks ----------------------------------------------------------------------------

class Counter:
    """A store's counter: reserve(n) hands out n numbers after the last."""

    def __init__(self, start: int = 0):
        self.last = start
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def reserve(self, n: int) -> int:
        with self.lock:
            self.calls.append(n)
            first = self.last + 1
            self.last += n
            return first


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_exact_blocks_hand_out_every_number_in_order():
    counter = Counter()
    seq = SequenceBlocks(counter.reserve)  # local mode: block 1, lifetime 0
    made = seq.take(1) + seq.take(3) + seq.take(1) + seq.take(1000)
    assert made == [str(i) for i in range(1, 1006)]
    assert counter.calls == [1, 3, 1, 1000]  # one reservation a submit, exactly what it needs


def test_a_burst_grows_the_blocks_so_the_counter_is_written_rarely():
    counter, clock = Counter(), Clock()
    seq = SequenceBlocks(counter.reserve, block=1, max_block=1000, lifetime=1.0, clock=clock)
    made = [seq.take(1)[0] for _ in range(5000)]  # all within the lifetime
    assert made == [str(i) for i in range(1, 5001)]
    assert len(counter.calls) < 15 and max(counter.calls) == 1000


def test_a_batch_is_one_run_from_one_block():
    counter, clock = Counter(), Clock()
    seq = SequenceBlocks(counter.reserve, block=1, max_block=1000, lifetime=1.0, clock=clock)
    seq.take(1)
    batch = seq.take(1000)
    assert ids.consecutive(batch) and counter.calls == [1, 1000]


def test_an_expired_block_is_dropped_and_later_ids_are_higher():
    counter, clock = Counter(), Clock()
    seq = SequenceBlocks(counter.reserve, block=8, max_block=64, lifetime=1.0, clock=clock)
    first = seq.take(1)
    clock.now += 1.5
    counter.last += 100  # another process reserved meanwhile
    later = seq.take(1)
    assert int(later[0]) > 100 > int(first[0])
    assert counter.calls[-1] == 8  # back to the smallest after a block went unused


def test_ids_across_processes_are_ordered_beyond_the_lifetime():
    counter, clock = Counter(), Clock()
    a = SequenceBlocks(counter.reserve, block=100, max_block=100, lifetime=1.0, clock=clock)
    b = SequenceBlocks(counter.reserve, block=100, max_block=100, lifetime=1.0, clock=clock)
    early = a.take(1)[0]
    b_early = b.take(1)[0]
    clock.now += 0.5
    assert int(a.take(1)[0]) < int(b_early)  # within the lifetime, a's block may still be below b's
    clock.now += 0.6
    assert int(a.take(1)[0]) > int(b_early) > int(early)  # past it, every new id is above both blocks


def test_blocks_are_thread_safe_and_unique():
    counter = Counter()
    seq = SequenceBlocks(counter.reserve, block=1, max_block=50, lifetime=None)
    out: list[list[str]] = []

    def work():
        mine = [seq.take(3) for _ in range(500)]
        out.append([i for run in mine for i in run])
        assert all(ids.consecutive(run) for run in mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all([int(i) for i in mine] == sorted(int(i) for i in mine) for mine in out)
    assert len({i for mine in out for i in mine}) == 12_000


def test_the_sequence_never_wraps():
    with pytest.raises(SpecError, match="job ids are used up"):
        ids.check_reservation(ids.MAX_SEQUENCE, 2)
    ids.check_reservation(ids.MAX_SEQUENCE, 1)
