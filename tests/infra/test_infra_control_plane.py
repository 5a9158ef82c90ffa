"""The control-plane stack: data stores, functions, schedules, API, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Match
from infra_templates import as_list, flat, resources, statements

from stacks import api, naming

HANDLERS = ("lambdas.api.handler", "lambdas.release.handler", "lambdas.scaler.handler", "lambdas.reconciler.handler",
            "lambdas.notifier.handler")


def lambda_functions(synth) -> dict[str, dict]:
    """Handler -> function properties (only ours, not CDK's helper functions)."""
    found = resources(synth.templates[synth.control_name], "AWS::Lambda::Function")
    properties = [f["Properties"] for f in found.values()]
    return {p["Handler"]: p for p in properties if p["Handler"] in HANDLERS}


def test_job_table_is_on_demand_recoverable_streamed_and_indexed(control, synth):
    control.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "HyperBatch-jobs",
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        },
    )
    table = next(iter(resources(synth.templates[synth.control_name], "AWS::DynamoDB::Table").values()))
    indexes = {
        gsi["IndexName"]: (
            [k["AttributeName"] for k in gsi["KeySchema"]],
            gsi["Projection"]["ProjectionType"],
            sorted(gsi["Projection"].get("NonKeyAttributes", [])),
        )
        for gsi in table["Properties"]["GlobalSecondaryIndexes"]
    }
    # The job indexes carry only what DynamoJobStore filters on or expands (it fetches full items by key).
    assert indexes == {
        "by_owner": (["gsi1pk", "gsi1sk"], "INCLUDE", ["members", "queue"]),
        "by_queue_state": (["gsi2pk", "gsi2sk"], "INCLUDE", ["state"]),
        "by_parent": (["gsi3pk", "gsi3sk"], "ALL", []),
    }
    types = {a["AttributeName"]: a["AttributeType"] for a in table["Properties"]["AttributeDefinitions"]}
    assert set(types.values()) == {"S"}


def test_retained_resources_are_kept_except_when_their_first_create_fails(synth):
    # Plain Retain would keep what a failed first deploy made, and the retry would stop at fixed
    # names that "already exist"; RetainExceptOnCreate lets the rollback delete them.
    policies = {
        (name, logical_id): (resource.get("DeletionPolicy", "Delete"), resource.get("UpdateReplacePolicy", "Delete"))
        for name, template in synth.templates.items()
        for logical_id, resource in template["Resources"].items()
    }
    assert not [key for key, (deletion, _) in policies.items() if deletion == "Retain"]
    template = synth.templates[synth.control_name]
    named = {
        logical_id
        for type_, name_property in (
            ("AWS::DynamoDB::Table", "TableName"),
            ("AWS::S3::Bucket", "BucketName"),
            ("AWS::Logs::LogGroup", "LogGroupName"),
        )
        for logical_id, resource in resources(template, type_).items()
        if name_property in resource["Properties"]
    }
    assert len(named) == 2 + len(synth.config.queues)  # job table, files bucket, a job log group per queue
    assert synth.config.settings.deletion_protection
    for logical_id in named:
        assert policies[(synth.control_name, logical_id)] == ("RetainExceptOnCreate", "Retain"), logical_id


def test_job_table_deletion_protection_is_switched_on_after_everything_else_exists(synth):
    template = synth.templates[synth.control_name]
    (table_id, table), = resources(template, "AWS::DynamoDB::Table").items()
    # Not in the table's own properties: protected from its create on, it would block a failed create's rollback.
    assert "DeletionProtectionEnabled" not in table["Properties"]
    (guard_id, guard), = resources(template, "Custom::AWS").items()
    create, delete = json.loads(flat(guard["Properties"]["Create"])), json.loads(flat(guard["Properties"]["Delete"]))
    assert (create["action"], create["parameters"]) == (
        "UpdateTable", {"TableName": "${" + table_id + "}", "DeletionProtectionEnabled": True}
    )
    assert delete["parameters"]["DeletionProtectionEnabled"] is False
    others = set(template["Resources"]) - {guard_id, "CDKMetadata"}
    assert others <= set(guard["DependsOn"]), "the protection must come last of all"
    updates = [s for _, s in statements(template) if "dynamodb:UpdateTable" in as_list(s["Action"])]
    assert updates and all(s["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]} for s in updates)


@pytest.mark.parametrize("queue", ["batch", "west"])
def test_each_queue_is_encrypted_with_a_dead_letter_queue_and_the_lease_as_visibility(control, synth, queue):
    dlq_name = f"HyperBatch-{queue}-dlq"
    control.has_resource_properties("AWS::SQS::Queue", {"QueueName": dlq_name, "SqsManagedSseEnabled": True})
    control.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": f"HyperBatch-{queue}",
            "SqsManagedSseEnabled": True,
            "VisibilityTimeout": int(synth.config.settings.lease_seconds),
            "RedrivePolicy": {"deadLetterTargetArn": Match.any_value(), "maxReceiveCount": 5},
        },
    )


def test_dead_letter_queues_keep_messages_longer_than_their_work_queues(synth):
    # A dead letter keeps its first enqueue time: the DLQ must outlast the work queue, or a letter
    # moved late would expire from the DLQ before anyone (the reconciler, a person) sees it.
    template = synth.templates[synth.control_name]
    queues = resources(template, "AWS::SQS::Queue")
    work = {k: q["Properties"] for k, q in queues.items() if "RedrivePolicy" in q["Properties"]}
    assert len(work) == len(synth.config.queues)
    for props in work.values():
        dlq_id = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        dead_letters = queues[dlq_id]["Properties"]["MessageRetentionPeriod"]
        assert dead_letters == 14 * 86400
        assert props["MessageRetentionPeriod"] <= dead_letters - 4 * 86400, props["QueueName"]


def test_every_queue_denies_requests_without_tls(synth):
    template = synth.templates[synth.control_name]
    queues = resources(template, "AWS::SQS::Queue")
    protected = set()
    for policy in resources(template, "AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}:
                protected.update(q["Ref"] for q in policy["Properties"]["Queues"])
    assert protected == set(queues), "every queue (work, dead-letter, release failures) needs the TLS-only policy"


def test_no_function_reserves_concurrency(synth):
    # Reserving any fails the deploy in an account whose concurrency quota is low (new accounts);
    # the scaler is single-flight through a lease item in the job table instead.
    functions_found = [
        (name, logical_id)
        for name, template in synth.templates.items()
        for logical_id in resources(template, "AWS::Lambda::Function")
    ]
    assert len(functions_found) >= len(HANDLERS)
    reserving = [
        (name, logical_id)
        for name, template in synth.templates.items()
        for logical_id, function in resources(template, "AWS::Lambda::Function").items()
        if "ReservedConcurrentExecutions" in function["Properties"]
    ]
    assert reserving == []


def test_functions_share_the_environment_contract(synth):
    expected = {
        "HYPER_TABLE",
        "HYPER_QUEUE_URLS",
        "HYPER_DLQ_URLS",
        "HYPER_LOG_GROUP_PREFIX",
        "HYPER_MAIN_REGION",
        "HYPER_STACK",
        "HYPER_ADMINS",
        "HYPER_FILES_BUCKET",
        "HYPER_CONFIG",
        "HYPER_COMPUTE",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
    }
    # The reconciler starts no workers (no HYPER_COMPUTE) and reads the parked stream batches.
    reconciler = expected - {"HYPER_COMPUTE"} | {"HYPER_STREAM_FAILURES_URL"}
    for handler, props in lambda_functions(synth).items():
        env = props["Environment"]["Variables"]
        assert set(env) == (reconciler if handler == "lambdas.reconciler.handler" else expected), handler
        assert env["HYPER_TABLE"] == "HyperBatch-jobs"
        assert env["HYPER_MAIN_REGION"] == "us-east-1"
        assert env["HYPER_STACK"] == "HyperBatch"
        assert env["HYPER_LOG_GROUP_PREFIX"] == "/hyperbatch/HyperBatch/jobs/"
        assert json.loads(env["HYPER_ADMINS"]) == synth.config.settings.admins
        assert env["POWERTOOLS_SERVICE_NAME"] == "hyperbatch"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "HyperBatch"
        assert "/${AWS::AccountId}/HyperBatch-batch" in flat(env["HYPER_QUEUE_URLS"])
        assert "/${AWS::AccountId}/HyperBatch-west-dlq" in flat(env["HYPER_DLQ_URLS"])
        if handler == "lambdas.reconciler.handler":
            assert flat(env["HYPER_STREAM_FAILURES_URL"]).endswith("/${AWS::AccountId}/HyperBatch-release-failures")


def test_hyper_config_round_trips_through_the_models(synth):
    from hyperbatch.config import validate

    env = lambda_functions(synth)["lambdas.api.handler"]["Environment"]["Variables"]
    assert validate(json.loads(env["HYPER_CONFIG"])) == synth.config


def test_hyper_compute_names_the_batch_targets_of_every_region(synth):
    env = lambda_functions(synth)["lambdas.scaler.handler"]["Environment"]["Variables"]
    compute = json.loads(env["HYPER_COMPUTE"])
    assert set(compute) == set(synth.config.compute_regions)
    for region in compute:
        assert compute[region]["default"] == {
            "type": "SPOT",
            "job_queue": "HyperBatch-default",
            "job_definitions": {"standard": "HyperBatch-standard-ec2-x86_64"},
        }


def staged_asset(synth, s3_key) -> Path:
    """Where the asset uploaded as `s3_key` (an S3Key value of the control template) is staged."""
    asset_hash = flat(s3_key).split(".")[0]
    assets = json.loads((synth.outdir / f"{synth.control_name}.assets.json").read_text())["files"]
    return synth.outdir / assets[asset_hash]["source"]["path"]


def test_code_asset_holds_only_the_scheduler_and_lambda_entry_points(synth):
    code_dirs = {staged_asset(synth, props["Code"]["S3Key"]) for props in lambda_functions(synth).values()}
    assert len(code_dirs) == 1, "the functions share one code asset"
    for directory in code_dirs:
        assert sorted(p.name for p in directory.iterdir()) == ["hyperbatch", "lambdas"]
        assert not list(directory.rglob("__pycache__"))


def test_release_consumes_the_stream_with_partial_failures_and_a_failure_queue(control):
    control.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [Match.any_value(), "StreamArn"]},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": Match.any_value(),
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
        },
    )
    control.has_resource_properties("AWS::SQS::Queue", {"QueueName": "HyperBatch-release-failures"})


def test_schedules_drive_the_scaler_and_reconciler(control, synth):
    minutes = synth.config.settings.scaler_interval_minutes
    scaler_rate = f"rate({minutes} minute{'s' if minutes > 1 else ''})"
    found = resources(synth.templates[synth.control_name], "AWS::Events::Rule")
    rules = [r["Properties"]["ScheduleExpression"] for r in found.values() if "ScheduleExpression" in r["Properties"]]
    assert scaler_rate in rules and "rate(1 minute)" in rules
    assert len(rules) == 2


def test_notices_on_the_default_bus_go_to_the_notifier_retried(control, synth):
    """The release function puts a notice event per mail or webhook; one rule hands them to the notifier."""
    found = resources(synth.templates[synth.control_name], "AWS::Events::Rule")
    [rule] = [r["Properties"] for r in found.values() if "EventPattern" in r["Properties"]]
    assert rule["EventPattern"] == {"source": ["hyperbatch"], "detail-type": ["HyperBatch Job Notice"]}
    [target] = rule["Targets"]
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 21600, "MaximumRetryAttempts": 3}
    assert "Notifier" in flat(target["Arn"])


def test_files_bucket_is_private_encrypted_tls_only_and_expires(control, synth):
    control.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [Match.object_like({})]},
        },
    )
    (bucket,) = resources(synth.templates[synth.control_name], "AWS::S3::Bucket").values()
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    expiry = {(r.get("Prefix") or "*"): r.get("ExpirationInDays") for r in rules if r["Status"] == "Enabled"}
    days = synth.config.settings.job_retention_days
    # A job's prefix goes with its record; what jobs read (scripts, uploads) outlives the jobs that may
    # still wait to run (up to 14 days in a queue and its DLQ); unfinished multipart uploads after a day.
    assert expiry == {"jobs/": days, "scripts/": days + 14, "uploads/": days + 14, "*": None}
    assert [r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] for r in rules
            if "AbortIncompleteMultipartUpload" in r] == [1]
    control.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_every_api_route_requires_iam(synth):
    routes = resources(synth.templates[synth.control_name], "AWS::ApiGatewayV2::Route")
    keys = {r["Properties"]["RouteKey"] for r in routes.values()}
    assert keys == {f"{method} {path}" for method, path in api.ROUTES}
    unauthorized = [
        r["Properties"]["RouteKey"] for r in routes.values() if r["Properties"].get("AuthorizationType") != "AWS_IAM"
    ]
    assert unauthorized == []


def test_api_is_http_with_throttled_logged_default_stage(control, synth):
    control.resource_count_is("AWS::ApiGatewayV2::Api", 1)
    control.has_resource_properties("AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP"})
    control.resource_count_is("AWS::ApiGateway::RestApi", 0)
    control.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": synth.config.settings.api.throttle_rate,
                "ThrottlingBurstLimit": synth.config.settings.api.throttle_burst,
            },
            "AccessLogSettings": {
                "DestinationArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
                "Format": Match.any_value(),
            },
        },
    )


def test_job_log_groups_exist_per_queue_with_retention(control, synth):
    for queue in synth.config.queues:
        control.has_resource_properties(
            "AWS::Logs::LogGroup",
            {
                "LogGroupName": naming.job_log_group("HyperBatch", queue.name),
                "RetentionInDays": synth.config.settings.log_retention_days,
            },
        )


def test_outputs_the_cli_imports_are_exported_per_deployment(synth):
    outputs = synth.templates[synth.control_name]["Outputs"]
    for key in ("ApiUrl", "Region", "StackName", "TableName", "QueueUrls", "LogGroupPrefix", "FilesBucket"):
        assert outputs[key]["Export"]["Name"] == f"HyperBatch-Control-{key}"
    assert outputs["Region"]["Value"] == "us-east-1"
    assert outputs["TableName"]["Value"] == "HyperBatch-jobs"
    assert outputs["LogGroupPrefix"]["Value"] == "/hyperbatch/HyperBatch/jobs/"
    assert flat(outputs["ApiUrl"]["Value"]).startswith("https://")


def test_dashboard_and_alarms_follow_settings(control, synth):
    dashboard = json.dumps(synth.templates[synth.control_name]["Resources"])
    control.resource_count_is("AWS::CloudWatch::Dashboard", 1 if synth.config.settings.monitoring.dashboard else 0)
    for metric in ("JobsSubmitted", "JobsSucceeded", "JobsFailed", "DispatchLatency", "WorkersRunning"):
        assert metric in dashboard
    alarms = resources(synth.templates[synth.control_name], "AWS::CloudWatch::Alarm")
    assert alarms and all(a["Properties"]["AlarmActions"] for a in alarms.values())
    dlq_alarms = [a for a in alarms.values() if "ApproximateNumberOfMessagesVisible" in json.dumps(a)]
    assert len(dlq_alarms) >= len(synth.config.queues)
    control.resource_count_is("AWS::SNS::Topic", 1)


def test_the_release_functions_stream_lag_raises_an_alarm(synth):
    # Work is sent from the job table's stream: a release function falling behind delays every job.
    alarms = resources(synth.templates[synth.control_name], "AWS::CloudWatch::Alarm")
    lag = [a["Properties"] for a in alarms.values() if "IteratorAge" in json.dumps(a)]
    assert len(lag) == 1 and lag[0]["Threshold"] == 60_000 and lag[0]["AlarmActions"]
    assert "release" in json.dumps(lag[0]["Dimensions"] if "Dimensions" in lag[0] else lag[0])
