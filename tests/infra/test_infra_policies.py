"""Least privilege across every synthesized template."""

from __future__ import annotations

from infra_templates import as_list, flat, role_statements, statements

from stacks import access


def test_no_statement_allows_every_action_of_anything(synth):
    offending = [
        (name, policy_id, action)
        for name, template in synth.templates.items()
        for policy_id, statement in statements(template)
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        if action == "*" or action.endswith(":*")
    ]
    assert offending == []


def test_no_statement_pairs_a_wildcard_action_with_a_wildcard_resource(synth):
    offending = [
        (name, policy_id)
        for name, template in synth.templates.items()
        for policy_id, statement in statements(template)
        if statement["Effect"] == "Allow"
        and any("*" in a for a in as_list(statement["Action"]))
        and "*" in as_list(statement.get("Resource", []))
    ]
    assert offending == []


def actions_of(synth, role_prefix: str) -> dict[str, set[str]]:
    """Action -> resources (flattened) granted to a control-plane function's role."""
    granted: dict[str, set[str]] = {}
    for statement in role_statements(synth.templates[synth.control_name], role_prefix):
        for action in as_list(statement["Action"]):
            granted.setdefault(action, set()).update(flat(r) for r in as_list(statement["Resource"]))
    return granted


def test_api_reads_and_writes_jobs_but_never_touches_compute_or_sends_work(synth):
    granted = actions_of(synth, "FunctionsApiRole")
    expected = {"dynamodb:PutItem", "dynamodb:Query", "sqs:GetQueueAttributes", "s3:PutObject", "logs:GetLogEvents"}
    assert expected <= set(granted)
    assert not any(a.startswith(("batch:", "ec2:", "autoscaling:")) for a in granted)
    # It writes the store only: the release function sends the work from the table's stream.
    assert not {"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"} & set(granted)
    # The files bucket: it puts scripts, presigns PUTs of uploads and GETs of job files (and reads both to
    # check and list them); it never deletes, and never reaches another bucket.
    bucket = "arn:${AWS::Partition}:s3:::hyperbatch-files-${AWS::AccountId}-us-east-1"
    files = {a: r for a, r in granted.items() if a.startswith("s3:")}
    assert files == {"s3:PutObject": {f"{bucket}/scripts/*", f"{bucket}/uploads/*"},
                     "s3:GetObject": {f"{bucket}/uploads/*", f"{bucket}/jobs/*"},
                     "s3:AbortMultipartUpload": {f"{bucket}/uploads/*"},  # a large upload qsub gave up
                     "s3:ListBucket": {bucket}, "s3:ListBucketMultipartUploads": {bucket}}


def test_scaler_writes_only_its_lease_item_and_submits_to_named_batch_targets(synth):
    granted = actions_of(synth, "FunctionsScalerRole")
    assert "sqs:SendMessage" not in granted and "dynamodb:BatchWriteItem" not in granted
    # Its single-flight lease is a conditional write of one item: every table write it may make is
    # confined to that item's partition key, on the table itself (no index is written).
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    write_statements = [
        s for s in role_statements(synth.templates[synth.control_name], "FunctionsScalerRole")
        if writes & set(as_list(s["Action"]))
    ]
    assert {a for s in write_statements for a in as_list(s["Action"])} >= {"dynamodb:PutItem", "dynamodb:UpdateItem"}
    table = "arn:${AWS::Partition}:dynamodb:us-east-1:${AWS::AccountId}:table/HyperBatch-jobs"
    for statement in write_statements:
        assert [flat(r) for r in as_list(statement["Resource"])] == [table]
        assert statement["Condition"] == {
            "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [access.SCALER_LEASE_KEY]}
        }
    submit = granted["batch:SubmitJob"]
    for region in synth.config.compute_regions:
        assert f"arn:${{AWS::Partition}}:batch:{region}:${{AWS::AccountId}}:job-queue/HyperBatch-default" in submit
        assert (
            f"arn:${{AWS::Partition}}:batch:{region}:${{AWS::AccountId}}:job-definition/HyperBatch-standard-ec2-x86_64:*"
            in submit
        )
    assert granted["ec2:GetSpotPlacementScores"] == {"*"}
    assert granted["batch:DescribeJobs"] == {"*"} and granted["batch:ListJobs"] == {"*"}


def test_reconciler_consumes_dead_letters_and_parked_stream_batches_and_sends_work(synth):
    granted = actions_of(synth, "FunctionsReconcilerRole")
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage"):  # dead letters and parked batches
        assert any(r.endswith(":HyperBatch-batch-dlq") for r in granted[action])
        assert any(r.endswith(":HyperBatch-release-failures") for r in granted[action])
    assert not any(r.endswith(":HyperBatch-batch") for r in granted["sqs:ReceiveMessage"])
    # A registered run taken back has its hidden message deleted (by the receipt in its entry).
    assert any(r.endswith(":HyperBatch-batch") for r in granted["sqs:DeleteMessage"])
    # Copies of dead letters and re-driven work go to the work queues; a batch failing again is parked again.
    assert any(r.endswith(":HyperBatch-batch") for r in granted["sqs:SendMessage"])
    assert any(r.endswith(":HyperBatch-release-failures") for r in granted["sqs:SendMessage"])
    assert not any(r.endswith("-dlq") for r in granted["sqs:SendMessage"])
    assert "sqs:ChangeMessageVisibility" not in granted
    # Parked batches are read back from the table's stream, and from nothing else.
    for action in ("dynamodb:GetShardIterator", "dynamodb:GetRecords"):
        assert granted[action] and all('"StreamArn"' in r for r in granted[action]), granted[action]
    assert {"dynamodb:UpdateItem", "dynamodb:Query"} <= set(granted)
    # Whether registered runs' workers still run: Batch's DescribeJobs, which reads only.
    assert granted["batch:DescribeJobs"] == {"*"}
    assert not any(a.startswith(("s3:", "ec2:", "autoscaling:")) for a in granted)
    assert {a for a in granted if a.startswith("batch:")} == {"batch:DescribeJobs"}
    # The stream batches it re-drives put their state changes as the release function does.
    assert granted["events:ListRules"] == {"*"}
    assert {a for a in granted if a.startswith("events:")} == {"events:PutEvents", "events:ListRules"}


def test_release_writes_jobs_and_sends_work(synth):
    granted = actions_of(synth, "FunctionsReleaseRole")
    assert {"dynamodb:UpdateItem", "sqs:SendMessage", "dynamodb:GetRecords"} <= set(granted)
    assert granted["events:PutEvents"] == {"arn:${AWS::Partition}:events:us-east-1:${AWS::AccountId}:event-bus/default"}
    # State changes are put only while a rule of the default bus could read them: it lists the rules.
    assert granted["events:ListRules"] == {"*"}
    assert any(r.endswith(":HyperBatch-batch") for r in granted["sqs:SendMessage"])
    assert not any(a.startswith(("batch:", "s3:", "ec2:")) for a in granted)


def test_notifier_without_mail_or_webhook_settings_may_only_write_its_logs(synth):
    granted = actions_of(synth, "FunctionsNotifierRole")
    assert set(granted) == {"logs:CreateLogStream", "logs:PutLogEvents"}
