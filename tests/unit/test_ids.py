import re
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperbatch import ids
from hyperbatch.errors import SpecError
from hyperbatch.ids import new_job_id, parse_job_ref, valid_job_id


def test_shape_and_alphabet():
    job_id = new_job_id()
    assert len(job_id) == 13
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{13}", job_id)
    assert not set("[].:,ILOU") & set(job_id)
    assert valid_job_id(job_id)


def test_ids_sort_in_creation_order_and_are_unique():
    made = [new_job_id() for _ in range(20_000)]  # many share a millisecond
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_time_prefix_decodes_to_now():
    import time

    prefix = new_job_id()[:10]
    ms = 0
    for char in prefix:
        ms = ms * 32 + ids.ALPHABET.index(char)
    assert abs(ms / 1000 - time.time()) < 5


def test_sequence_exhaustion_borrows_next_millisecond(monkeypatch):
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_700_000_000_000 * 1_000_000)
    made = [new_job_id() for _ in range(40_000)]  # more than 2**15 in one frozen millisecond
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_thread_safe():
    out: list[list[str]] = []

    def work():
        mine = [new_job_id() for _ in range(2000)]
        out.append(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(mine == sorted(mine) for mine in out)
    assert len({i for mine in out for i in mine}) == 16_000


def test_example_in_messages_is_a_real_id():
    assert valid_job_id(ids.EXAMPLE)


@pytest.mark.parametrize(
    "text",
    ["", "01JD4V8ZK2N3", "01JD4V8ZK2N3QQ", "01jd4v8zk2n3q", "01JD4V8ZK2N3I", "01JD4V8ZK2N3Q\n", "1234.server", None],
)
def test_invalid_ids(text):
    assert not valid_job_id(text)


def test_parse_job_ref():
    assert parse_job_ref("01JD4V8ZK2N3Q") == ("01JD4V8ZK2N3Q", None)
    assert parse_job_ref("01JD4V8ZK2N3Q[7]") == ("01JD4V8ZK2N3Q", 7)
    assert parse_job_ref("01JD4V8ZK2N3Q[0]") == ("01JD4V8ZK2N3Q", 0)
    assert parse_job_ref("01JD4V8ZK2N3Q[]") == ("01JD4V8ZK2N3Q", None)
    assert parse_job_ref("  01JD4V8ZK2N3Q[3] ") == ("01JD4V8ZK2N3Q", 3)


@pytest.mark.parametrize(
    "text", ["x", "01JD4V8ZK2N3Q[", "01JD4V8ZK2N3Q[-1]", "01JD4V8ZK2N3Q[a]", "01JD4V8ZK2N3Q[1][2]", "12.server"]
)
def test_parse_job_ref_rejects(text):
    with pytest.raises(SpecError) as err:
        parse_job_ref(text)
    assert str(err.value) == f"'{text}' is not a job id (like 01JD4V8ZK2N3Q or 01JD4V8ZK2N3Q[7])"


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_job_ref_round_trip(index):
    job_id = new_job_id()
    assert parse_job_ref(f"{job_id}[{index}]") == (job_id, index)
    assert parse_job_ref(job_id) == (job_id, None)
