"""The bot's Prometheus metrics, on a registry of their own.

Each Metrics object owns its registry rather than using prometheus_client's global one, so that
tests (and a demo next to a real bot in one process) can create as many as they like without
"Duplicated timeseries" errors, and /metrics shows exactly the bot's series.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from aimbot import __version__

NAMESPACE: Final = "aimbot"

# Dify answers take from a fraction of a second (cached, blocking) to minutes (agent apps that
# call tools); the buckets span both so the histogram shows where the time goes.
DIFY_LATENCY_BUCKETS: Final = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """Every series the bot exports; the components update the attributes directly."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        r = self.registry
        self.ims_in = Counter(
            "ims_received",
            "Instant messages received from AIM users",
            namespace=NAMESPACE,
            registry=r,
        )
        self.ims_out = Counter(
            "ims_sent",
            "Reply parts delivered to AIM users: acknowledged by the server (or written to a "
            "server that never acknowledges)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.ims_resent = Counter(
            "ims_resent",
            "Reply parts sent again because the server neither acknowledged them in time nor "
            "took them (rate)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.ims_given_up = Counter(
            "ims_given_up",
            "Reply parts never delivered, by reason "
            "(no_ack, refused, expired, unsendable, offline_notice)",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.ims_dropped = Counter(
            "ims_dropped",
            "Instant messages not answered, by reason (blocked, rate_limited, too_old, ...)",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.ims_ignored = Counter(
            "ims_ignored",
            "IMs from senders that are not people, never answered, by reason "
            "(system_sender, ignored_sender, auto_response)",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.dify_latency = Histogram(
            "dify_request_seconds",
            "Time from sending a query to Dify to having the whole answer",
            namespace=NAMESPACE,
            buckets=DIFY_LATENCY_BUCKETS,
            registry=r,
        )
        self.dify_errors = Counter(
            "dify_errors",
            "Failed Dify queries, by error type (after retries)",
            ["type"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.friendly_errors = Counter(
            "friendly_errors",
            "Apology messages sent to users instead of an answer",
            namespace=NAMESPACE,
            registry=r,
        )
        self.dify_circuit_open = Gauge(
            "dify_circuit_open",
            "1 while the Dify circuit breaker is open (queries are refused), else 0",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconnects = Counter(
            "reconnects",
            "Times the bot signed on again after losing its AIM session",
            namespace=NAMESPACE,
            registry=r,
        )
        self.online = Gauge(
            "online",
            "1 while the bot is signed on to the AIM server, else 0",
            namespace=NAMESPACE,
            registry=r,
        )
        self.queue_depth = Gauge(
            "queue_depth",
            "Messages accepted but not yet answered, over all users",
            namespace=NAMESPACE,
            registry=r,
        )
        self.active_users = Gauge(
            "active_users",
            "Users with a message waiting or a query in flight",
            namespace=NAMESPACE,
            registry=r,
        )
        self.outbox_depth = Gauge(
            "outbox_depth",
            "Replies waiting to be delivered (e.g. while signed off)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reply_queue_length = Gauge(
            "reply_queue_length",
            "Reply parts waiting for their turn to be sent (not in flight, not held)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reply_queue_users = Gauge(
            "reply_queue_users",
            "Users with a reply waiting; replies go round-robin, one per user per round",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reply_queue_oldest = Gauge(
            "reply_queue_oldest_seconds",
            "Age of the oldest reply part waiting to be sent (0 when none waits)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reply_queue_wait = Gauge(
            "reply_queue_expected_wait_seconds",
            "Expected wait of a reply queued now: waiting users x average time per send",
            namespace=NAMESPACE,
            registry=r,
        )
        self.build_info = Gauge(
            "build_info",
            "Always 1; the label carries the running aimbot version",
            ["version"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.build_info.labels(version=__version__).set(1)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every series, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
