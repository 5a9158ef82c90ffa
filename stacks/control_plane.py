"""The main region's stack: API, functions, job table, work queues, files bucket, monitoring."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from hyperbatch.config import Configuration
from hyperbatch.core.names import EVENT_SOURCE, JOB_PREFIX, NOTICE_DETAIL_TYPE, SCRIPT_PREFIX, UPLOAD_PREFIX

from stacks import access, compute_plan, contract, naming, storage, worker_roles
from stacks.api import HyperApi
from stacks.functions import Functions
from stacks.monitoring import Monitoring
from stacks.nag import acknowledge, allow
from stacks.people import PeoplePolicies
from stacks.retention import log_group

RELEASE_RETRY_ATTEMPTS = 5  # then the batch goes to the release-failures queue


def _default_bus(config: Configuration) -> str:
    return naming.arn("events", config.settings.main_region, "event-bus/default")


def _allow_rule_listing(function: lambda_.Function, config: Configuration) -> None:
    """ListRules: state changes are put only while a rule of the default bus could match them
    (hyperbatch.adapters.aws.notices.RuleWatch); with `notifications.event_bus` off none are, and none is asked."""
    if not config.settings.notifications.event_bus:
        return
    allow(function, ["events:ListRules"], ["*"],
          wildcard_reason="ListRules lists the rules of a bus and is not authorized against one rule; it only reads "
                          "their names and patterns, to put job state changes only while a rule could match them.")


class ControlPlaneStack(Stack):
    def __init__(self, scope: Construct, id: str, *, config: Configuration, **props) -> None:
        super().__init__(scope, id, **props)
        deployment = config.settings.stack_name

        self.table = storage.job_table(self, config)
        self.queues = storage.work_queues(self, config)
        self.bucket = storage.files_bucket(self, config)
        # Job output: one log group per queue (so retention is managed here), one stream per job.
        self.job_logs = {
            q.name: log_group(self, f"JobLogs-{q.name}", config, naming.job_log_group(deployment, q.name))
            for q in config.queues
        }
        self.release_failures = storage.secure_queue(self, "ReleaseFailures", naming.stream_failures_queue(deployment))
        acknowledge(
            self.release_failures,
            "This queue is the on-failure destination of the release function's stream mapping.",
            "AwsSolutions-SQS3",
        )

        compute = compute_plan.compute_targets(config)
        contract.check_lambda_environment_size(config, compute)
        environment = contract.lambda_environment(config, compute)
        functions = Functions(self, "Functions", config=config, environment=environment)
        self.api_function = self._api_function(functions, config)
        self.release_function = self._release_function(functions, config)
        self.scaler_function = self._scaler_function(functions, config)
        self.reconciler_function = self._reconciler_function(
            functions, config, contract.reconciler_environment(config, compute))
        self.notifier_function = self._notifier_function(functions, config)

        self.api = HyperApi(self, "Api", config=config, handler=self.api_function)
        self.people = PeoplePolicies(self, "People", config=config, api_id=self.api.http_api.api_id)
        self.onprem_workers = worker_roles.onprem_worker_policy(self, config)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            api=self.api.http_api,
            functions={
                "api": self.api_function,
                "release": self.release_function,
                "scaler": self.scaler_function,
                "reconciler": self.reconciler_function,
            },
            table=self.table,
            queues=self.queues,
            other_dead_letter_queues={"release-failures": self.release_failures},
        )
        self._outputs(config)
        if config.settings.deletion_protection:
            self.table_protection = storage.protect_after_create(self, self.table, config)  # last: it follows everything

    def _api_function(self, functions: Functions, config: Configuration) -> lambda_.Function:
        function = functions.add("Api", "lambdas.api.handler", timeout_seconds=29)  # 512 MiB: it waits on I/O
        access.job_table(function, config, access.TABLE_READ + access.TABLE_WRITE)
        # It only writes the store (the release function sends from the stream); GET /queues counts.
        access.work_queues(function, config, ("sqs:GetQueueAttributes",))
        access.job_logs(function, config, access.LOG_READ)
        # Scripts over a few KB go to the files bucket at submit; only workers read them back. Users reach
        # the bucket only through URLs the API presigns: PUT for their uploads, GET for their jobs' files;
        # it reads the uploads a job names (HeadObject) and lists a job's files (hyperbatch/core/bucket.py).
        access.bucket_objects(function, config, SCRIPT_PREFIX, ("s3:PutObject",))
        # A large upload is a multipart one: it starts, completes (PutObject) and aborts it, and finds
        # whether an upload id is one in progress for the key named (ListBucketMultipartUploads).
        access.bucket_objects(function, config, UPLOAD_PREFIX, ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"))
        access.bucket_objects(function, config, JOB_PREFIX, ("s3:GetObject",))
        access.bucket_listing(function, config, (UPLOAD_PREFIX, JOB_PREFIX))
        access.bucket_uploads_in_progress(function, config)
        return function

    def _release_function(self, functions: Functions, config: Configuration) -> lambda_.Function:
        function = functions.add("Release", "lambdas.release.handler", timeout_seconds=60)
        access.job_table(function, config, access.TABLE_READ + access.TABLE_WRITE)
        # It sends the work every change makes runnable (hyperbatch.adapters.aws.stream).
        access.work_queues(function, config, access.QUEUE_SEND)
        allow(function, ["events:PutEvents"], [_default_bus(config)])  # job state changes and notices
        _allow_rule_listing(function, config)
        # The mapping grants the stream reads (and the failure queue's sends) itself.
        function.add_event_source(
            sources.DynamoEventSource(
                self.table,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=100,
                max_batching_window=Duration.seconds(1),
                bisect_batch_on_error=True,
                report_batch_item_failures=True,
                retry_attempts=RELEASE_RETRY_ATTEMPTS,
                on_failure=sources.SqsDlq(self.release_failures),
            )
        )
        acknowledge(
            function.role,
            "dynamodb:ListStreams has no resource-level permissions; CDK's stream grant adds it on '*' "
            "for the event source mapping. The stream read actions themselves are scoped to the table's stream.",
            "AwsSolutions-IAM5[Resource::*]",
        )
        return function

    def _scaler_function(self, functions: Functions, config: Configuration) -> lambda_.Function:
        # Single flight: two scalers running at once would both start the same workers. Not with
        # reserved concurrency (an account with a low concurrency quota cannot set any aside): a
        # run first takes a lease item in the job table with a conditional write.
        function = functions.add("Scaler", "lambdas.scaler.handler", timeout_seconds=60)
        access.job_table(function, config, access.TABLE_READ)
        access.scaler_lease(function, config)
        access.work_queues(function, config, ("sqs:GetQueueAttributes",))
        self._allow_compute(function, config)
        self._schedule("ScalerSchedule", function, config.settings.scaler_interval_minutes)
        return function

    def _reconciler_function(self, functions: Functions, config: Configuration,
                             environment: dict[str, str]) -> lambda_.Function:
        function = functions.add("Reconciler", "lambdas.reconciler.handler", timeout_seconds=120,
                                 environment=environment)
        access.job_table(function, config, access.TABLE_READ + access.TABLE_WRITE)
        # Sends to the work queues (copies of dead letters, re-driven work); reads and deletes dead letters.
        # Deletes the hidden message of a registered run it took back (its receipt is in the run's entry).
        access.work_queues(function, config, ("sqs:SendMessage", "sqs:DeleteMessage"))
        access.dead_letter_queues(function, config, ("sqs:ReceiveMessage", "sqs:DeleteMessage"))
        # Parked stream batches: read from the release-failures queue (one failing again is parked
        # again from its first failed record), their records read back from the table's stream.
        deployment, main = config.settings.stack_name, config.settings.main_region
        failures = naming.queue_arn(main, naming.stream_failures_queue(deployment))
        allow(function, ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage"), [failures])
        allow(function, ("dynamodb:GetShardIterator", "dynamodb:GetRecords"), [self.table.table_stream_arn])
        # Registered runs: is each one's worker still running (hyperbatch.adapters.aws.census)?
        allow(function, ["batch:DescribeJobs"], ["*"],
              wildcard_reason="DescribeJobs supports no resource-level permissions (IAM service authorization "
                              "reference), so the resource must be '*'; it only reads.")
        # Stream batches it re-drives put their state changes and notices, as the release function does.
        allow(function, ["events:PutEvents"], [_default_bus(config)])
        _allow_rule_listing(function, config)
        self._schedule("ReconcilerSchedule", function, 1)
        return function

    def _notifier_function(self, functions: Functions, config: Configuration) -> lambda_.Function:
        """Mail (SES) and webhooks for the notices the release function puts on the default bus
        (hyperbatch.adapters.aws.notices); a failed delivery is tried again by Lambda, twice."""
        function = functions.add("Notifier", "lambdas.notifier.handler", timeout_seconds=30)
        settings, main = config.settings.notifications, config.settings.main_region
        if settings.ses_sender:
            allow(function, ["ses:SendEmail"], [naming.arn("ses", main, "identity/*")],
                  wildcard_reason="SES authorizes a send against the sender's identity and every recipient's "
                                  "(any address a job's -M names); the From address is fixed by settings.",
                  conditions={"StringEquals": {"ses:FromAddress": settings.ses_sender}})
        if settings.webhook_secret_parameter:
            allow(function, ["ssm:GetParameter"],
                  [naming.arn("ssm", main, f"parameter{settings.webhook_secret_parameter}")])
        events.Rule(
            self,
            "NoticeRule",
            event_pattern=events.EventPattern(source=[EVENT_SOURCE], detail_type=[NOTICE_DETAIL_TYPE]),
            targets=[targets.LambdaFunction(function, retry_attempts=3, max_event_age=Duration.hours(6))],
        )
        return function

    def _allow_compute(self, function: lambda_.Function, config: Configuration) -> None:
        """Start and count workers in every compute region: Batch jobs, or Auto Scaling capacity."""
        unscoped = (
            "These actions support no resource-level permissions (IAM service authorization reference), "
            "so the resource must be '*'; they only read."
        )
        job_queues, job_definitions, groups = [], [], []
        for region in config.compute_regions:
            plan = compute_plan.plan_region(config, region)
            for cluster in plan.clusters:
                if cluster.job_queue:
                    job_queues.append(naming.arn("batch", region, f"job-queue/{cluster.job_queue}"))
                if cluster.auto_scaling_group:
                    groups.append(naming.auto_scaling_group_arn(region, cluster.auto_scaling_group))
            # SubmitJob is authorized against a job definition revision: name:revision.
            job_definitions += [
                naming.arn("batch", region, f"job-definition/{jd.name}:*") for jd in plan.job_definitions
            ]
        if job_queues:
            allow(
                function,
                ["batch:SubmitJob"],
                job_queues + job_definitions,
                wildcard_reason="The '*' is the job definition revision, which changes on every deploy.",
            )
            allow(function, ["batch:ListJobs", "batch:DescribeJobs"], ["*"], wildcard_reason=unscoped)
        if groups:
            allow(
                function,
                ["autoscaling:SetDesiredCapacity"],
                groups,
                wildcard_reason="The '*' is the group's generated id; the group name is fixed.",
            )
            allow(function, ["autoscaling:DescribeAutoScalingGroups"], ["*"], wildcard_reason=unscoped)
        # Spot placement scores feed the 'auto' region weights.
        allow(function, ["ec2:GetSpotPlacementScores"], ["*"], wildcard_reason=unscoped)

    def _schedule(self, id: str, function: lambda_.IFunction, minutes: int) -> None:
        events.Rule(
            self,
            id,
            schedule=events.Schedule.rate(Duration.minutes(minutes)),
            # A missed tick is made up by the next one; retrying a stale one only doubles work.
            targets=[targets.LambdaFunction(function, retry_attempts=0, max_event_age=Duration.minutes(minutes))],
        )

    def _outputs(self, config: Configuration) -> None:
        """What `hyper hosts import-deployment` reads; exports are unique per deployment."""
        deployment, main = config.settings.stack_name, config.settings.main_region
        env = contract.shared_environment(config)
        values = {
            "ApiUrl": self.api.url,
            "Region": main,
            "StackName": deployment,
            "TableName": naming.table(deployment),
            "QueueUrls": env["HYPER_QUEUE_URLS"],
            "LogGroupPrefix": naming.log_group_prefix(deployment),
            "FilesBucket": naming.files_bucket(deployment, main),
            # For people: attach to the role or group they use (docs/deployment.md).
            "SubmitterPolicyArn": self.people.submitters.managed_policy_arn,
            "AdminPolicyArn": self.people.admins.managed_policy_arn,
            # For machines of your own running `hyper worker start` (docs/deployment.md).
            "OnPremWorkerPolicyArn": self.onprem_workers.managed_policy_arn,
        }
        for key, value in values.items():
            CfnOutput(self, key, value=value, export_name=naming.export(deployment, key))
