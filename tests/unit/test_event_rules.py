"""hyperbatch.core.event_rules: which rules of the default bus could match a job state change;
hyperbatch.adapters.aws.notices.RuleWatch: asking ListRules at most once a minute, and putting when it fails."""

from __future__ import annotations

import json
import logging

import pytest

from hyperbatch.core import notices
from hyperbatch.core.event_rules import could_match, listens
from hyperbatch.core.model import new_job

NOTICE_RULE = {"source": ["hyperbatch"], "detail-type": ["HyperBatch Job Notice"]}  # the stack's notifier rule


@pytest.mark.parametrize("pattern, matches", [
    # source
    ({"source": ["hyperbatch"]}, True),
    ({"source": ["aws.batch", "hyperbatch"]}, True),
    ({"source": ["aws.batch"]}, False),
    ({"source": ["HyperBatch"]}, False),  # exact matching is case-sensitive
    ({"source": [{"prefix": "hyper"}]}, True),
    ({"source": [{"prefix": "aws."}]}, False),
    ({"source": [{"prefix": {"equals-ignore-case": "HYPER"}}]}, True),
    ({"source": [{"suffix": "batch"}]}, True),
    ({"source": [{"suffix": ".ec2"}]}, False),
    ({"source": [{"equals-ignore-case": "HyperBatch"}]}, True),
    ({"source": [{"equals-ignore-case": "aws.ec2"}]}, False),
    ({"source": [{"wildcard": "hyper*"}]}, True),
    ({"source": [{"wildcard": "*batch"}]}, True),
    ({"source": [{"wildcard": "aws.*"}]}, False),
    ({"source": [{"wildcard": "hyper\\*"}]}, False),  # an escaped star is a star
    ({"source": [{"anything-but": "aws.ec2"}]}, True),
    ({"source": [{"anything-but": "hyperbatch"}]}, False),
    ({"source": [{"anything-but": ["aws.ec2", "hyperbatch"]}]}, False),
    ({"source": [{"anything-but": {"prefix": "aws."}}]}, True),
    ({"source": [{"anything-but": {"prefix": "hyper"}}]}, False),
    ({"source": [{"anything-but": {"suffix": "batch"}}]}, False),
    ({"source": [{"anything-but": {"equals-ignore-case": ["AWS.EC2", "HYPERBATCH"]}}]}, False),
    ({"source": [{"anything-but": {"wildcard": "h*h"}}]}, False),
    ({"source": [{"anything-but": {"something-new": "x"}}]}, True),  # not understood: counts as matching
    ({"source": [{"exists": True}]}, True),
    ({"source": [{"exists": False}]}, False),
    ({"source": [None]}, False),
    ({"source": [7]}, False),
    ({"source": [{"a-matcher-from-next-year": "x"}]}, True),  # not understood: counts as matching
    ({"source": "hyperbatch"}, True),  # not a list (EventBridge refuses it): cannot tell, so it counts
    # detail-type
    ({"source": ["hyperbatch"], "detail-type": ["HyperBatch Job State Change"]}, True),
    (NOTICE_RULE, False),  # HyperBatch's own notifier rule does not count
    ({"detail-type": [{"prefix": "HyperBatch Job"}]}, True),
    ({"detail-type": ["Batch Job State Change"]}, False),
    ({"source": ["aws.batch"], "detail-type": ["HyperBatch Job State Change"]}, False),
    # other fields are never held against a rule
    ({"account": ["123456789012"]}, True),
    ({"source": ["hyperbatch"], "detail": {"status": ["FAILED"]}}, True),
    ({}, True),
    # $or: any branch
    ({"$or": [{"source": ["aws.ec2"]}, {"source": ["hyperbatch"]}]}, True),
    ({"$or": [{"source": ["aws.ec2"]}, {"detail-type": ["HyperBatch Job Notice"]}]}, False),
    ({"source": ["aws.ec2"], "$or": [{"account": ["1"]}, {"region": ["us-east-1"]}]}, False),
    ({"source": ["hyperbatch"], "$or": [{"detail-type": ["x"]}, {"detail": {"status": ["FAILED"]}}]}, True),
])
def test_a_pattern_could_match_a_state_change_unless_its_source_or_detail_type_excludes_it(pattern, matches):
    assert could_match(pattern) is matches


@pytest.mark.parametrize("rule, counts", [
    ({"Name": "mine", "State": "ENABLED", "EventPattern": json.dumps({"source": ["hyperbatch"]})}, True),
    ({"Name": "mine", "State": "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS",
      "EventPattern": json.dumps({"account": ["123456789012"]})}, True),
    ({"Name": "off", "State": "DISABLED", "EventPattern": json.dumps({"source": ["hyperbatch"]})}, False),
    ({"Name": "notices", "State": "ENABLED", "EventPattern": json.dumps(NOTICE_RULE)}, False),
    ({"Name": "every-minute", "State": "ENABLED", "ScheduleExpression": "rate(1 minute)"}, False),
    ({"Name": "odd", "State": "ENABLED", "EventPattern": "{not json"}, True),
])
def test_a_rule_counts_when_enabled_with_a_pattern_that_could_match(rule, counts):
    assert listens(rule) is counts


# ---- the release function's side: RuleWatch -----------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Bus:
    """EventBridge as the release function sees it: ListRules in pages of `page`, PutEvents recorded."""

    def __init__(self, rules=(), page=2, error: Exception | None = None):
        self.rules, self.page, self.error = list(rules), page, error
        self.listed = 0  # ListRules calls
        self.put: list[dict] = []

    def list_rules(self, NextToken=None):  # noqa: N803 (boto3's name)
        self.listed += 1
        if self.error is not None:
            raise self.error
        start = int(NextToken or 0)
        answer = {"Rules": self.rules[start:start + self.page]}
        if start + self.page < len(self.rules):
            answer["NextToken"] = str(start + self.page)
        return answer

    def put_events(self, Entries):  # noqa: N803
        self.put += Entries
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(n)} for n, _ in enumerate(Entries)]}


def rule(name: str, pattern: dict) -> dict:
    return {"Name": name, "State": "ENABLED", "EventPattern": json.dumps(pattern)}


def change() -> dict:
    doc = new_job(id="42", server="srv", name="run", owner="ann", queue="default")
    return notices.state_change_detail(doc, None)


def kinds(bus: Bus) -> list[str]:
    return [e["DetailType"] for e in bus.put]


def test_state_changes_are_put_only_while_a_rule_could_read_them_asked_at_most_once_a_minute():
    from hyperbatch.adapters.aws.notices import EventBridgeNotices

    others = [rule(f"ec2-{n}", {"source": ["aws.ec2"]}) for n in range(5)] + [rule("notices", NOTICE_RULE)]
    bus, clock = Bus(others), Clock()
    eventbridge = EventBridgeNotices(bus, clock=clock)
    eventbridge.publish([change()], [])
    assert (bus.put, bus.listed) == ([], 3)  # every page read: nobody listens

    bus.rules.append(rule("mine", {"source": ["hyperbatch"]}))
    clock.now += 59
    eventbridge.publish([change()], [])
    assert (bus.put, bus.listed) == ([], 3)  # the answer is kept a minute
    clock.now += 1
    eventbridge.publish([change(), change()], [])
    assert kinds(bus) == ["HyperBatch Job State Change"] * 2 and bus.listed == 7

    del bus.rules[-1]
    clock.now += 60
    bus.put.clear()
    eventbridge.publish([change()], [])
    assert bus.put == []


def test_notices_go_out_whoever_listens_and_a_batch_without_state_changes_asks_nothing():
    from hyperbatch.adapters.aws.notices import EventBridgeNotices

    doc = dict(new_job(id="42", server="srv", name="run", owner="ann", queue="default"), state="QUEUED")
    running = dict(doc, state="RUNNING", version=doc["version"] + 1, started_at=3.0, notify=["https://h.example/x"])
    deliveries = notices.of_change(doc, running)
    bus = Bus()
    EventBridgeNotices(bus).publish([], deliveries)
    assert (kinds(bus), bus.listed) == (["HyperBatch Job Notice"], 0)
    EventBridgeNotices(bus).publish([change()], deliveries)
    assert kinds(bus) == ["HyperBatch Job Notice"] * 2 and bus.listed == 1


def test_with_the_feed_off_state_changes_are_never_put_and_no_rule_is_listed():
    from hyperbatch.adapters.aws.notices import EventBridgeNotices

    bus = Bus([rule("mine", {"source": ["hyperbatch"]})])
    EventBridgeNotices(bus, state_changes=False).publish([change()], [])
    assert (bus.put, bus.listed) == ([], 0)


def test_when_the_rules_cannot_be_listed_the_events_are_put_and_that_is_logged_once(caplog):
    from botocore.exceptions import ClientError

    from hyperbatch.adapters.aws.notices import EventBridgeNotices

    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized to events:ListRules"}},
                         "ListRules")
    bus, clock = Bus(error=denied), Clock()
    eventbridge = EventBridgeNotices(bus, clock=clock)
    with caplog.at_level(logging.WARNING, logger="hyperbatch.notify"):
        for _ in range(3):
            eventbridge.publish([change()], [])
            clock.now += 60
    assert kinds(bus) == ["HyperBatch Job State Change"] * 3
    assert bus.listed == 3  # asked again every minute: a permission granted later is seen
    assert [r.getMessage() for r in caplog.records] == [
        "cannot list the default event bus's rules (An error occurred (AccessDeniedException) when calling the "
        "ListRules operation: not authorized to events:ListRules): job state changes are put whether a rule "
        "reads them or not"]

    bus.error = None  # granted: nobody listens, nothing more is put
    bus.put.clear()
    eventbridge.publish([change()], [])
    assert bus.put == []
