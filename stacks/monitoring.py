"""The deployment's dashboard and alarms, in the main region.

AWS-resource metrics (SQS, Lambda, DynamoDB, API Gateway) come from
cdk-monitoring-constructs, which also builds their alarms. HyperBatch's own
EMF metrics are charted with SEARCH expressions: Powertools adds a `service`
dimension to every metric, and a search by `queue` (or `region`) finds them
whatever other dimensions they carry.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from cdk_monitoring_constructs import (
    AlarmFactoryDefaults,
    DefaultDashboardFactory,
    ErrorCountThreshold,
    MaxAgeThreshold,
    MaxMessageCountThreshold,
    MonitoringFacade,
    SnsAlarmActionStrategy,
)
from constructs import Construct

from hyperbatch.config import Configuration

from stacks.nag import acknowledge
from stacks.storage import WorkQueue

NAMESPACE = "HyperBatch"
JOB_METRICS = ("JobsSubmitted", "JobsStarted", "JobsSucceeded", "JobsFailed", "JobsCancelled")
REGION_METRICS = ("WorkersRunning", "VcpusRunning")
PERIOD = Duration.minutes(1)
STREAM_LAG_ALARM_MS = 60_000  # the release function a minute behind the job table


def emf_search(metric: str, dimension: str, value: str, statistic: str) -> cloudwatch.SearchExpression:
    """A HyperBatch metric for one queue or region, whatever other dimensions it carries.

    No `{namespace,dimensions}` schema on purpose: a schema matches only metrics with
    exactly those dimensions. The quoted namespace is an exact search term instead.
    """
    query = f'"{NAMESPACE}" MetricName="{metric}" {dimension}="{value}"'
    return cloudwatch.SearchExpression(
        expression=f"SEARCH('{query}', '{statistic}', {int(PERIOD.to_seconds())})", label=metric, period=PERIOD
    )


class Monitoring(Construct):
    """Dashboard (settings.monitoring.dashboard) and alarms (settings.monitoring.alarms)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: Configuration,
        api: apigw.IHttpApi,
        functions: dict[str, lambda_.IFunction],
        table: dynamodb.ITable,
        queues: dict[str, WorkQueue],
        other_dead_letter_queues: dict[str, sqs.IQueue],
    ) -> None:
        super().__init__(scope, id)
        settings = config.settings.monitoring
        self.alarm_topic = self._alarm_topic(config) if settings.alarms else None
        self.facade = MonitoringFacade(
            self,
            "Facade",
            alarm_factory_defaults=AlarmFactoryDefaults(
                actions_enabled=True,
                alarm_name_prefix=config.settings.stack_name,
                action=SnsAlarmActionStrategy(on_alarm_topic=self.alarm_topic) if self.alarm_topic else None,
                datapoints_to_alarm=1,
            ),
            dashboard_factory=DefaultDashboardFactory(
                self,
                "Dashboards",
                dashboard_name_prefix=config.settings.stack_name,
                create_dashboard=settings.dashboard,
                create_summary_dashboard=False,
                create_alarm_dashboard=False,
            ),
        )
        self._queues(queues)
        self._regions(config.compute_regions)
        self.facade.add_large_header("Control plane")
        # Explicit friendly names everywhere: the default derives from resource names,
        # which are tokens, and would make alarm logical ids change from synth to synth.
        self.facade.monitor_api_gateway_v2_http_api(
            api=api,
            alarm_friendly_name="http-api",
            human_readable_name="HTTP API",
            add5xx_count_alarm=self._alarm(ErrorCountThreshold(max_error_count=0)),
        )
        for name, function in functions.items():
            # The release function reads the job table's stream, and on AWS work is sent from it: a
            # stream falling behind delays every job, so its iterator age is watched too.
            stream = {"is_iterator": True, "add_max_iterator_age_alarm": self._alarm(
                MaxAgeThreshold(max_age_in_millis=STREAM_LAG_ALARM_MS))} if name == "release" else {}
            self.facade.monitor_lambda_function(
                lambda_function=function,
                human_readable_name=f"{name} function",
                alarm_friendly_name=f"{name}-function",
                add_fault_count_alarm=self._alarm(ErrorCountThreshold(max_error_count=0)),
                add_throttles_count_alarm=self._alarm(ErrorCountThreshold(max_error_count=0)),
                **stream,
            )
        self.facade.monitor_dynamo_table(
            table=table, alarm_friendly_name="jobs-table", billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST
        )
        for name, dead_letters in other_dead_letter_queues.items():
            self.facade.monitor_sqs_queue(
                queue=dead_letters,
                alarm_friendly_name=name,
                add_queue_max_size_alarm=self._alarm(MaxMessageCountThreshold(max_message_count=0)),
            )

    def _alarm(self, threshold) -> dict | None:
        """cdk-monitoring-constructs takes alarms as {disambiguator: threshold}; none when alarms are off."""
        return {"Critical": threshold} if self.alarm_topic else None

    def _alarm_topic(self, config: Configuration) -> sns.Topic:
        topic = sns.Topic(self, "AlarmTopic", display_name=f"{config.settings.stack_name} alarms", enforce_ssl=True)
        acknowledge(
            topic,
            "Alarm notifications carry only alarm names and states. CloudWatch cannot publish to a topic "
            "encrypted with the AWS-managed SNS key, and a customer key would cost more than the data is worth.",
            "AwsSolutions-SNS2",
        )
        if config.settings.monitoring.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(config.settings.monitoring.alarm_email))
        return topic

    def _queues(self, queues: dict[str, WorkQueue]) -> None:
        for name, pair in queues.items():
            self.facade.add_large_header(f"Queue {name}")
            self.facade.add_widget(
                cloudwatch.GraphWidget(
                    title=f"{name}: jobs per minute",
                    left=[emf_search(metric, "queue", name, "Sum") for metric in JOB_METRICS],
                    width=12,
                )
            )
            self.facade.add_widget(
                cloudwatch.GraphWidget(
                    title=f"{name}: dispatch latency",
                    left=[emf_search("DispatchLatency", "queue", name, stat) for stat in ("Average", "Maximum")],
                    width=12,
                )
            )
            self.facade.monitor_sqs_queue_with_dlq(
                queue=pair.queue,
                dead_letter_queue=pair.dead_letters,
                alarm_friendly_name=name,
                add_dead_letter_queue_max_size_alarm=self._alarm(MaxMessageCountThreshold(max_message_count=0)),
            )

    def _regions(self, regions: list[str]) -> None:
        self.facade.add_large_header("Compute regions")
        for region in regions:
            self.facade.add_widget(
                cloudwatch.GraphWidget(
                    title=f"{region}: workers and vCPUs",
                    left=[emf_search(metric, "region", region, "Maximum") for metric in REGION_METRICS],
                    width=24 // max(1, min(len(regions), 3)),
                )
            )
