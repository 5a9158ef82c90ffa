"""How often a running job looks at the store and writes to it (hyperbatch.core.cadence), as configured."""

import json

from hyperbatch import config
from hyperbatch.core.cadence import Cadence
from tests.unit.test_config import EXAMPLE

AWS = config.load(EXAMPLE).settings.cadence()  # lease 60 s, heartbeat 15 s, looks at most 300 s apart, run lease 1 h


def test_looks_start_a_heartbeat_apart_and_grow_with_the_runs_age_to_the_cap():
    assert [AWS.check_gap(age) for age in (0, 15, 30, 60, 200, 599, 3000)] == [15, 15, 15, 30, 100, 299.5, 300]


def test_an_hour_long_run_makes_about_twenty_looks_and_two_writes_a_short_one_none():
    assert AWS.checks_within(3600) == 19
    assert AWS.renewals_within(3600) == 2  # registered at 20 s, renewed at 30 min 20 s
    assert (AWS.checks_within(10), AWS.renewals_within(10)) == (0, 0)
    assert (AWS.checks_within(60), AWS.renewals_within(60)) == (3, 1)


def test_a_run_registers_early_enough_to_try_again_before_it_fences_itself():
    """A run fences itself a claim lease less half a heartbeat after its start, unless registered:
    registering at a third of the claim lease leaves time for a second try (a heartbeat later) even
    at the configuration's bound (heartbeat = claim lease / 3), with half a heartbeat to spare."""
    assert (AWS.register_at, AWS.margin, AWS.fenced_at) == (20, 7.5, 52.5)
    assert AWS.registration_tries() == 3  # at 20, 35 and 50 s
    for lease in (3, 60, 90):
        bound = Cadence(lease, lease / 3, lease, 2 * lease)
        assert bound.registration_tries() == 2
        second_try = bound.register_at + bound.first_check
        assert bound.fenced_at - second_try == bound.first_check / 2 == bound.margin
    for heartbeat in (0.5, 1, 5, 10, 19.9):
        assert Cadence(60, heartbeat, 300, 3600).registration_tries() >= 2


def test_local_mode_renews_at_every_beat_as_before():
    local = Cadence.fine(10, 1)
    assert not local.registers and local.check_gap(500) == 1
    assert local.renewals_within(60) == 59


def test_a_configuration_without_the_new_settings_loads_with_their_defaults(tmp_path):
    for name in config.FILES:
        (tmp_path / f"{name}.json").write_text((EXAMPLE / f"{name}.json").read_text())
    old = {k: v for k, v in json.loads((EXAMPLE / "settings.json").read_text()).items()
           if k not in ("heartbeat_max_seconds", "run_lease_seconds")}
    (tmp_path / "settings.json").write_text(json.dumps(old))
    settings = config.load(tmp_path).settings
    assert (settings.heartbeat_max_seconds, settings.run_lease_seconds) == (300, 3600)
