import re
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperbatch.core import ids
from hyperbatch.core.errors import SpecError
from hyperbatch.core.ids import new_job_id, new_job_ids, parse_job_ref, valid_job_id


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


def seq(job_id: str) -> int:
    return ids._decode(job_id[ids.PREFIX:])


def test_lone_ids_stay_in_the_lower_half():
    assert all(seq(new_job_id()) < ids.BLOCK_START for _ in range(5000))


def test_a_block_is_consecutive_ids_of_one_millisecond_in_the_upper_half():
    made = new_job_ids(1000)
    assert len({i[:ids.PREFIX] for i in made}) == 1
    assert [seq(i) for i in made] == list(range(ids.BLOCK_START, ids.BLOCK_START + 1000))
    assert all(valid_job_id(i) for i in made) and ids.block_prefix(made) == made[0][:ids.PREFIX]
    assert len(new_job_ids(ids.MAX_BLOCK)) == ids.MAX_BLOCK and seq(new_job_ids(ids.MAX_BLOCK)[-1]) == 2**15 - 1
    for n in (0, ids.MAX_BLOCK + 1):
        with pytest.raises(ValueError):
            new_job_ids(n)


def test_blocks_never_share_a_millisecond_and_everything_keeps_increasing(monkeypatch):
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_600_000_000_000 * 1_000_000)  # frozen, in the past
    made, blocks = [], []
    for n in (3, 1, 16384, 7, 2):
        made.append(new_job_id())
        blocks.append(new_job_ids(n))
        made += blocks[-1]
        made += [new_job_id() for _ in range(3)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert len({b[0][:ids.PREFIX] for b in blocks}) == len(blocks)  # each block in a millisecond of its own
    assert all(seq(i) < ids.BLOCK_START for i in made if not any(i in b for b in blocks))


def test_lone_ids_borrow_the_next_millisecond_after_a_block(monkeypatch):
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_650_000_000_000 * 1_000_000)
    first = new_job_id()
    block = new_job_ids(2)
    after = new_job_id()
    assert first[:ids.PREFIX] == block[0][:ids.PREFIX] and first < block[0] < block[1] < after
    assert after[:ids.PREFIX] > block[0][:ids.PREFIX] and seq(after) < 2**13


def test_block_prefix_rejects_what_is_not_one_block():
    lone = [new_job_id(), new_job_id()]
    assert ids.block_prefix(lone) is None
    assert ids.block_prefix(new_job_ids(2) + new_job_ids(2)) is None  # two milliseconds
    assert ids.block_prefix([]) is None and ids.block_prefix(["nope"]) is None


def test_next_millisecond_is_above_every_id_of_the_millisecond():
    job_id = new_job_ids(ids.MAX_BLOCK)[-1]
    bound = ids.next_millisecond(job_id)
    assert job_id < bound and bound[:ids.PREFIX] > job_id[:ids.PREFIX] and seq(bound) == 0


def test_blocks_are_thread_safe():
    out: list[list[str]] = []

    def work():
        out.extend(new_job_ids(100) for _ in range(50))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({b[0][:ids.PREFIX] for b in out}) == 400
    assert len({i for b in out for i in b}) == 40_000
