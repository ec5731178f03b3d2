"""Settings of the daemon: one TOML file, validated at load, frozen afterwards.

Every error names the file, the key path and the reason, so that
``monitor check-config`` and ``monitor run`` fail before touching Kafka.
Connection settings can be overridden from the environment
(``MONITOR_KAFKA_BOOTSTRAP``, ``MONITOR_KAFKA_SECURITY_PROTOCOL``,
``MONITOR_KAFKA_SASL_MECHANISM``, ``MONITOR_KAFKA_SASL_USERNAME``,
``MONITOR_KAFKA_SASL_PASSWORD``, ``MONITOR_KAFKA_SSL_CAFILE``,
``MONITOR_KAFKA_SSL_CERTFILE``, ``MONITOR_KAFKA_SSL_KEYFILE``) so a container
runs the same file anywhere, and every key from ``MONITOR__<TABLE>__<KEY>``
(see :mod:`monitor.envconfig`).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.catalogue import (
    CLASS_SUBJECT_METRICS,
    COVERAGE_SIGNALS,
    DETECTOR_SIGNALS,
    DETECTOR_STREAMS,
    DRIFT_SIGNALS,
    ESTIMATED_SIGNALS,
    GAP_METRICS,
    LABEL_SUBJECT,
    MODEL_QUALITY_SIGNALS,
    OUTPUT_SUBJECTS,
    PREDICTION_SUBJECT,
    SCORE_SUBJECT,
    SIGNALS,
    TASK_METRICS,
    TASK_UNLABELLED,
    UNLABELLED_METRICS,
    base_metric,
    computed_signals,
)
from monitor.errors import ConfigError

__all__ = [
    "CLASS_SUBJECT_METRICS",
    "COVERAGE_SIGNALS",
    "DETECTOR_SIGNALS",
    "DETECTOR_STREAMS",
    "DRIFT_SIGNALS",
    "ESTIMATED_SIGNALS",
    "GAP_METRICS",
    "LABEL_SUBJECT",
    "MODEL_QUALITY_SIGNALS",
    "OUTPUT_SUBJECTS",
    "PREDICTION_SUBJECT",
    "SCORE_SUBJECT",
    "TASK_METRICS",
    "TASK_UNLABELLED",
    "UNLABELLED_METRICS",
    "AlertRuleConfig",
    "ConfigError",
    "LimitsConfig",
    "ModelConfig",
    "MonitorConfig",
    "OutputsConfig",
    "WindowSpec",
    "canonical_class",
    "load_config",
    "parse_duration",
    "parse_signal",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from ``"10s"``, ``"5m"``, ``"1.5h"``, ``"2d"`` or a plain number of seconds.

    >>> parse_duration("1h"), parse_duration("250ms"), parse_duration(30)
    (3600.0, 0.25, 30.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '10s' or '5m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(f"expected a duration like '10s', '5m', '1h' or '2d', got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration like '10s' or '5m', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be finite and non-negative, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
ClassValue = str | int | bool


def canonical_class(value: object) -> str:
    """The string a class value is compared by: ``1``, ``1.0``, ``"1"`` and ``True`` agree.

    >>> canonical_class(True), canonical_class(1.0), canonical_class("cat")
    ('1', '1', 'cat')
    """
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One window of a model: ``all`` (cumulative), a sliding span, or an exponential decay.

    ``seconds`` is the span of a sliding window or the half-life of a decay window.
    """

    name: str
    kind: Literal["all", "sliding", "decay"]
    seconds: float = 0.0

    @staticmethod
    def parse(text: str) -> WindowSpec:
        """Parse ``all``, ``1h`` (sliding) or ``ewm30m`` (decay, half-life 30 m).

        >>> WindowSpec.parse("ewm30m")
        WindowSpec(name='ewm30m', kind='decay', seconds=1800.0)
        """
        if text == "all":
            return WindowSpec("all", "all")
        if text.startswith("ewm"):
            seconds = parse_duration(text[3:])
            if seconds <= 0:
                raise ValueError(f"decay half-life must be positive in {text!r}")
            return WindowSpec(text, "decay", seconds)
        try:
            seconds = parse_duration(text)
        except ValueError:
            raise ValueError(
                f"invalid window {text!r}; valid: 'all', a span like '1h', or 'ewm' + half-life"
            ) from None
        if seconds <= 0:
            raise ValueError(f"window span must be positive in {text!r}")
        return WindowSpec(text, "sliding", seconds)


_SIGNAL_RE = re.compile(r"^([a-z_][a-z0-9_]*)(?::([^@\s]+))?@([^@\s]+)$")


def parse_signal(text: str) -> tuple[str, str | None, str]:
    """Split ``<name>[:<subject>]@<window>``; raise ValueError when it has not that shape.

    >>> parse_signal("psi:amount@1h"), parse_signal("f1@ewm30m")
    (('psi', 'amount', '1h'), ('f1', None, 'ewm30m'))
    """
    match = _SIGNAL_RE.match(text)
    if not match:
        raise ValueError(
            f"signal {text!r} is not <name>[:<subject>]@<window> (e.g. 'f1@1h', 'psi:amount@1h')"
        )
    return match.group(1), match.group(2), match.group(3)


_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_.\-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(_Strict):
    """Where the daemon reads and writes; SASL/SSL settings are passed to the client as given."""

    bootstrap_servers: str = Field("localhost:9092", description="host:port[,host:port...]")
    group_id: str = Field("monitor", description="consumer group of the replicas")
    client_id: str = Field("monitor", description="client id shown in broker logs")
    predictions_topic: str = "predictions"
    labels_topic: str = "labels"
    alerts_topic: str = "monitor.alerts"
    dead_letter_topic: str = "monitor.dead-letters"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    session_timeout: Duration = Field(10.0, description="group session timeout")
    heartbeat_interval: Duration = Field(3.0, description="group heartbeat interval")
    max_poll_records: int = Field(10_000, gt=0, description="most messages one poll returns")
    min_poll_interval: Duration = Field(
        0.1,
        ge=0,
        le=10,
        description=(
            "while the input trickles in (a poll returned less than a tenth of"
            " max_poll_records), the next poll starts no sooner than this after the last one"
            " began, so that what arrives meanwhile is processed as one batch (0: poll again"
            " at once)"
        ),
    )
    max_message_bytes: int = Field(
        1_048_576, gt=0, description="larger messages are rejected as too_large"
    )
    fetch_max_bytes: int = Field(52_428_800, gt=0, description="most bytes one fetch returns")
    client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python",
        description="input consumer library: kafka-python, or confluent (librdkafka, faster)",
    )
    fetch_queue_backoff: Duration = Field(
        0.05,
        ge=0,
        description="confluent: wait before refetching a partition whose local queue is full",
    )
    label_lead: Duration = Field(
        60.0,
        ge=0,
        description=(
            "while a predictions partition has more than a poll's records left to read, its"
            " labels partition is paused once it is this far ahead in event time (0: never)"
        ),
    )

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError("sasl_mechanism is required when security_protocol is SASL_*")
        if self.heartbeat_interval >= self.session_timeout:
            raise ValueError("heartbeat_interval must be shorter than session_timeout")
        return self


class HttpConfig(_Strict):
    """The one port that serves /metrics, /healthz and /readyz."""

    listen: str = Field("127.0.0.1:9108", description="host:port; port 0 picks a free one")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @property
    def host(self) -> str:
        """Host part of ``listen``."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """Port part of ``listen``."""
        return int(self.listen.rpartition(":")[2])


# Readiness and Prometheus keys (``[readiness]``, ``[prometheus]``) are kept together here,
# with the default drift reference of a model without a reference file.

#: Predictions of a model's first closed panes that become its drift reference when it has
#: no reference file (``reference_warmup``'s default): drift is on out of the box.
DEFAULT_REFERENCE_WARMUP = 5_000


def drift_reference_text(model: ModelConfig) -> str:
    """Where a model's drift reference comes from, for the start-up log line."""
    if model.reference:
        return f"file {model.reference}"
    if model.reference_warmup:
        return f"its first {model.reference_warmup} predictions (reference_warmup)"
    return "none: no drift statistics (no reference file, reference_warmup = 0)"
_MATCHER_RE = re.compile(
    r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
)


class ReadinessConfig(_Strict):
    """When ``/readyz`` and ``monitor_ready`` say the daemon is caught up.

    Caught up means behind the end of its input partitions by at most ``max_lag``
    messages in all and at most ``max_lag_time`` seconds (the age of the oldest message
    still waiting, from its record timestamp). A ready daemon turns unready only after
    being out of those bounds for ``unready_after``; an unready one turns ready when
    back within half of them. Losing Kafka or the partitions is reported at once.
    """

    max_lag: int = Field(
        10_000, ge=0, description="messages behind (all partitions) still counted as caught up"
    )
    max_lag_time: Duration = Field(
        30.0, description="seconds behind (age of the oldest unread message) still caught up"
    )
    unready_after: Duration = Field(
        30.0, description="how long out of bounds before a ready daemon turns unready"
    )
    input_alert_after: Duration = Field(
        60.0, gt=0, description="how long the input must be unreadable before the monitor "
        "sends its own monitor-input-unavailable alert (to Alertmanager and the log)"
    )


class PrometheusConfig(_Strict):
    """The ``/metrics`` exposition and the rules ``monitor rules export`` writes."""

    max_series: int = Field(
        10_000, ge=0, description="most monitor_model_metric series per scrape; the rest dropped"
    )
    rules_selector: str = Field(
        'job="monitor"',
        description="PromQL label matchers added to every series of the exported rules, "
        "e.g. 'job=\"monitor\",namespace=\"fraud\"'; empty: none",
    )

    @field_validator("rules_selector")
    @classmethod
    def _matchers(cls, value: str) -> str:
        text = value.strip().strip("{}").strip()
        if not text:
            return ""
        for part in _split_matchers(text):
            if not _MATCHER_RE.fullmatch(part):
                raise ValueError(
                    f'expected label matchers like job="monitor",env=~"prod.*", got {value!r}'
                )
        return text


def _split_matchers(text: str) -> list[str]:
    """``a="x,y",b!="z"`` -> ``['a="x,y"', 'b!="z"']`` (commas inside quotes kept)."""
    parts, current, quoted, escaped = [], "", False, False
    for char in text:
        if char == "," and not quoted:
            parts.append(current)
            current = ""
            continue
        current += char
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
    parts.append(current)
    return parts


class StateConfig(_Strict):
    """Where checkpoints go and how often they are written."""

    dir: str = Field("state", description="local checkpoint directory (relative to the config)")
    checkpoint_interval: Duration = Field(10.0, gt=0, description="wall time between checkpoints")
    store: Literal["local", "kafka"] = Field(
        "local", description="local: one file in dir (one replica); kafka: a compacted topic"
    )
    topic: str = Field("monitor.state", description="the state topic of the kafka store")
    topic_partitions: int = Field(1, gt=0, description="partitions of the state topic, if created")
    partials_topic: str = Field(
        "",
        description="kafka store: the topic between the two stages (pane deltas per model); "
        "empty: '<group_id>.partials'",
    )
    partials_partitions: int = Field(
        12, gt=0, description="partitions of the partials topic, if created (models spread)"
    )
    partials_retention: Duration = Field(
        7 * 86400.0,
        gt=0,
        description="retention of the partials topic, if created: far longer than "
        "checkpoint_interval (a new owner reads the deltas after the last stage checkpoint)",
    )
    max_record_bytes: int = Field(
        67_108_864, gt=0, description="largest state record (producer request, topic limit)"
    )
    hmac_key: SecretStr | None = Field(
        None,
        description="key of an HMAC-SHA256 over each state file and record (at least 16 "
        "characters; env MONITOR_STATE_HMAC_KEY); records failing it are skipped",
    )

    @field_validator("hmac_key")
    @classmethod
    def _key_length(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value().encode()) < 16:
            raise ValueError("hmac_key must be at least 16 bytes long")
        return key

    def hmac_bytes(self) -> bytes | None:
        """The HMAC key as bytes (None: state is checksummed, not authenticated)."""
        return None if self.hmac_key is None else self.hmac_key.get_secret_value().encode()


class LimitsConfig(_Strict):
    """Length limits on the strings of events, in characters (Unicode code points): what one
    event can leave in memory and in checkpoints is bounded whatever its producer sends.
    An event with a longer string is rejected as ``too_long`` (and dead-lettered)."""

    max_id_length: int = Field(256, ge=1, le=1_048_576, description="longest prediction_id")
    max_value_length: int = Field(
        256, ge=1, le=1_048_576, description="longest string prediction or label value (class)"
    )
    max_segment_length: int = Field(
        256, ge=1, le=1_048_576, description="longest segment value or model_version"
    )
    max_category_length: int = Field(
        256, ge=1, le=1_048_576, description="longest string value of a watched feature"
    )


class TimeConfig(_Strict):
    """Event-time resolution of windows and how long the watermark waits."""

    pane: Duration = Field(10.0, gt=0, description="event-time width of a pane")
    allowed_lateness: Duration = Field(60.0, description="how far the watermark trails event time")
    idle_timeout: Duration = Field(
        30.0,
        gt=0,
        description="wall time before a silent, caught-up partition stops holding the watermark",
    )
    unassigned_timeout: Duration = Field(
        120.0,
        gt=0,
        description=(
            "wall time a partition of the input topics that this process does not hold keeps "
            "holding the watermark (another member's, or not yet handed out after a restart "
            "or a rebalance) before the clock goes on without it"
        ),
    )
    max_future: Duration = Field(
        3600.0,
        gt=0,
        description=(
            "how far an event's time may be ahead of its Kafka record's timestamp (the wall "
            "clock when a record has none); an event further ahead is rejected as 'future'"
        ),
    )


def _number(value: Any) -> float:
    """A finite number from TOML (an integer or a float; not a string, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


Number = Annotated[float, BeforeValidator(_number)]
RuleKind = Literal[
    "threshold", "relative", "control_band", "detector", "absence", "label_starvation"
]
RULE_KINDS: tuple[str, ...] = (
    "threshold",
    "relative",
    "control_band",
    "detector",
    "absence",
    "label_starvation",
)
#: Template fields an annotation (or label) value may use, e.g. ``"F1 {value:.2f} < {threshold}"``.
TEMPLATE_FIELDS = ("value", "threshold", "model", "rule", "signal", "severity", "window")
#: Labels the monitor sets itself on every alert; rule ``labels`` may not override them.
RESERVED_LABELS = ("alertname", "model", "rule", "severity", "signal")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_template(text: str) -> None:
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise ValueError(f"bad template {text!r}: {exc}") from None
    for name in fields:
        if name.split(".")[0].split("[")[0] not in TEMPLATE_FIELDS:
            raise ValueError(
                f"unknown template field {{{name}}} in {text!r}; valid: {list(TEMPLATE_FIELDS)}"
            )


class AlertmanagerConfig(_Strict):
    """Optional push of firing and resolved alerts to an Alertmanager (v2 API)."""

    url: str | None = Field(None, description="e.g. http://127.0.0.1:9093; unset: no push")
    resend_interval: Duration = Field(
        60.0, gt=0, description="firing alerts are re-posted this often"
    )
    timeout: Duration = Field(5.0, gt=0, description="per-request timeout")
    queue_size: int = Field(1000, gt=0, description="alerts waiting to be posted")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9._/#: -]{1,255}$")


class OutputsConfig(_Strict):
    """Optional exports of the signals besides Prometheus (both off by default)."""

    tensorboard_dir: str | None = Field(
        None,
        min_length=1,
        description="TensorBoard scalars, one run per model (relative to the config)",
    )
    cloudwatch: bool = Field(False, description="CloudWatch embedded metric format lines")
    cloudwatch_namespace: str = Field("monitor", description="CloudWatch namespace of the metrics")

    @field_validator("cloudwatch_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _NAMESPACE_RE.match(value) or value.startswith((":", "AWS/")):
            raise ValueError(
                f"invalid CloudWatch namespace {value!r}: 1-255 of letters, digits and "
                "'. - _ / # : ' (space), not starting with ':' or 'AWS/'"
            )
        return value


class AlertRuleConfig(_Strict):
    """One alert rule of a model (``[[models.alerts]]``); see the README's "Alerting".

    Kinds and the keys they use:

    - ``threshold``: ``signal``, ``op``, ``threshold`` (``resolve_threshold`` for hysteresis);
    - ``relative``: ``signal``, ``op`` (``<``: a drop, the default; ``>``: a rise), and either
      ``drop`` (a fraction of the reference value) or ``k`` (reference standard deviations);
      the reference is ``reference`` (and ``reference_sd``) until a reference profile has one;
    - ``control_band``: ``signal`` leaves its own EWMA mean by more than ``k`` EWMA standard
      deviations (``half_life``, ``direction``, ``warmup`` panes);
    - ``detector``: a drift detector's signal is above ``threshold`` (default 0) in a pane;
      the alert resolves after ``resolve_for`` without one;
    - ``absence``: no predictions for the model for ``for``;
    - ``label_starvation``: ``label_coverage@<window>`` below ``threshold`` for ``for``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=_NAME_RE, description="unique within the model")
    kind: RuleKind = Field("threshold", description="what the rule checks")
    signal: str | None = Field(None, description="<name>[:<subject>]@<window>")
    op: Literal["<", "<=", ">", ">="] | None = Field(None, description="fires when value op bound")
    threshold: Number | None = Field(None, description="the bound (threshold, starvation)")
    resolve_threshold: Number | None = Field(
        None, description="resolves past this bound (hysteresis); default: threshold"
    )
    reference: Number | None = Field(None, description="relative: reference value")
    reference_sd: Number | None = Field(None, gt=0, description="relative: reference std dev")
    drop: Number | None = Field(None, gt=0, description="relative: change, fraction of reference")
    resolve_drop: Number | None = Field(None, ge=0, description="relative: resolve bound")
    k: Number | None = Field(None, gt=0, description="standard deviations (relative, band)")
    resolve_k: Number | None = Field(None, ge=0, description="resolve bound in std devs")
    half_life: Duration | None = Field(None, gt=0, description="control_band: EWMA half-life")
    direction: Literal["both", "down", "up"] = Field("both", description="control_band side")
    warmup: int = Field(10, ge=1, description="control_band: panes seen before evaluating")
    for_: Duration = Field(0.0, alias="for", description="how long the condition must hold")
    resolve_for: Duration | None = Field(
        None, description="how long the resolve condition must hold; default: for (detector: 5m)"
    )
    cooldown: Duration = Field(0.0, description="quiet time after a resolution")
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    min_samples: int = Field(0, ge=0, description="samples in the window below which: no check")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels", "annotations")
    @classmethod
    def _templates(cls, value: dict[str, str], info: Any) -> dict[str, str]:
        for key, text in value.items():
            if not _LABEL_NAME_RE.match(key):
                raise ValueError(f"invalid name {key!r}: letters, digits and _ only")
            if info.field_name == "labels" and key in RESERVED_LABELS:
                raise ValueError(
                    f"label {key!r} is set by the monitor; reserved: {list(RESERVED_LABELS)}"
                )
            _check_template(text)
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> AlertRuleConfig:
        kind = self.kind
        needs_signal = kind in ("threshold", "relative", "control_band", "detector")
        if needs_signal and self.signal is None:
            raise ValueError(f"a {kind} rule needs 'signal'")
        if kind == "absence":
            if self.signal is not None:
                raise ValueError("an absence rule has no 'signal' (it watches the predictions)")
            if self.for_ <= 0:
                raise ValueError("an absence rule needs 'for' > 0 (how long the silence lasts)")
        if kind == "threshold" and (self.op is None or self.threshold is None):
            raise ValueError("a threshold rule needs 'op' and 'threshold'")
        if kind == "label_starvation" and self.threshold is None:
            raise ValueError("a label_starvation rule needs 'threshold' (a coverage fraction)")
        if kind == "relative":
            if (self.drop is None) == (self.k is None):
                raise ValueError("a relative rule needs exactly one of 'drop' and 'k'")
            if self.k is not None and self.reference is not None and self.reference_sd is None:
                raise ValueError("a relative rule with 'k' needs 'reference_sd' with 'reference'")
        if self.resolve_threshold is not None and self.threshold is not None and self.op:
            lower = self.op in ("<", "<=")
            if (
                (self.resolve_threshold < self.threshold)
                if lower
                else (self.resolve_threshold > self.threshold)
            ):
                raise ValueError(
                    "resolve_threshold must be on the healthy side of threshold "
                    f"(op {self.op!r}: {'>=' if lower else '<='} {self.threshold:g})"
                )
        return self


DetectorName = Literal[
    "adwin", "cusum", "page_hinkley", "ddm", "eddm", "hddm_a", "hddm_w", "kswin"
]


class CusumOptions(_Strict):
    """``{name = "cusum", ...}`` in ``detectors``: a CUSUM calibrated to a false-alarm budget."""

    name: Literal["cusum"]
    reference_error: float | None = Field(
        None, gt=0, lt=1, description="reference error rate; default: learned from the warmup"
    )
    delta: float = Field(0.05, gt=0, lt=1, description="rise of the error rate to detect")
    false_alarm_budget: float = Field(
        1_000_000, ge=10, description="expected events between false alarms with no drift"
    )
    warmup: int = Field(10_000, ge=1, description="events to learn the reference from")


DetectorEntry = DetectorName | CusumOptions


def _default_detectors() -> list[DetectorEntry]:
    return ["adwin", "cusum"]


class ModelConfig(_Strict):
    """One watched model: its task, classes, windows, metrics, features and segments."""

    name: str = Field(pattern=_NAME_RE)
    task: Literal["binary", "multiclass", "regression"]
    positive_class: ClassValue | None = None
    classes: list[ClassValue] | None = None
    label_ttl: Duration = Field(
        21600.0, gt=0, description="how long a prediction waits for its label"
    )
    max_pending: int = Field(1_000_000, gt=0, description="cap on predictions waiting for labels")
    max_pending_bytes: int = Field(
        268_435_456,
        gt=0,
        description="cap on the bytes of predictions waiting for labels (ids and columns)",
    )
    max_early_labels: int = Field(
        100_000, gt=0, description="cap on labels waiting for predictions"
    )
    windows: list[str] = Field(default_factory=lambda: ["all", "1h", "ewm30m"], min_length=1)
    metrics: list[str] | None = Field(None, description="default: every metric of the task")
    features: dict[str, Literal["numeric", "categorical"]] = Field(default_factory=dict)
    segments: list[str] = Field(default_factory=list, description="event segment keys to slice by")
    max_versions: int = Field(
        20, gt=0, description="model versions beyond this fold into __other__"
    )
    max_segment_values: int = Field(
        50, gt=0, description="segment values beyond this fold into __other__"
    )
    score_bins: int = Field(
        200, ge=10, le=100_000, description="score histogram bins (AUC, PR AUC)"
    )
    reference: str | None = Field(
        None, description="CSV or JSON-lines file of reference rows (drift profile)"
    )
    reference_warmup: int = Field(
        DEFAULT_REFERENCE_WARMUP,
        ge=0,
        description="without a reference file: build the drift profile from the predictions "
        "of the first closed panes that hold at least this many (0: no profile; default "
        "off with a reference file; with replicas the model's owner builds it)",
    )
    drift_bins: int = Field(
        20, ge=2, le=1000, description="quantile bins per numeric feature (plus under/overflow)"
    )
    max_categories: int = Field(
        20, ge=1, le=10_000, description="top reference categories kept per categorical feature"
    )
    drift_min_samples: int = Field(
        1000,
        ge=1,
        description="drift statistics and label-free estimates are NaN in a window with "
        "fewer values (the effect sizes' noise floor grows as windows shrink)",
    )
    detectors: list[DetectorEntry] = Field(
        default_factory=_default_detectors,
        description="concept-drift detectors on the error stream ([] for none); a name, "
        'or {name = "cusum", reference_error = ..., delta = ..., false_alarm_budget = ...}',
    )
    alerts: list[AlertRuleConfig] = Field(default_factory=list)

    @field_validator("detectors")
    @classmethod
    def _detectors(cls, value: list[DetectorEntry]) -> list[DetectorEntry]:
        names = [d if isinstance(d, str) else d.name for d in value]
        if len(set(names)) != len(names):
            raise ValueError(f"detectors must be distinct: {names}")
        return value

    @property
    def detector_names(self) -> list[str]:
        """The configured detectors' names, in order."""
        return [d if isinstance(d, str) else d.name for d in self.detectors]

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for text in value:
            WindowSpec.parse(text)
        if len(set(value)) != len(value):
            raise ValueError("windows must be distinct")
        return value

    @model_validator(mode="after")
    def _task_fields(self) -> ModelConfig:
        if self.task == "binary":
            if self.positive_class is None:
                raise ValueError("positive_class is required for a binary model")
            if self.classes is not None and len({canonical_class(c) for c in self.classes}) != 2:
                raise ValueError("a binary model's classes must name two distinct classes")
        if self.task == "multiclass":
            if not self.classes or len(self.classes) < 2:
                raise ValueError("classes (two or more) are required for a multiclass model")
            if len({canonical_class(c) for c in self.classes}) != len(self.classes):
                raise ValueError("classes must be distinct")
        if self.reference and "reference_warmup" not in self.model_fields_set:
            object.__setattr__(self, "reference_warmup", 0)  # the file is the reference
        if self.reference and self.reference_warmup:
            raise ValueError("set either reference (a file) or reference_warmup, not both")
        for feature in self.features:
            if feature in OUTPUT_SUBJECTS:
                raise ValueError(
                    f"feature name {feature!r} is reserved for the drift of the model's outputs"
                )
        if self.metrics is not None:
            valid = TASK_METRICS[self.task] + UNLABELLED_METRICS
            for metric in self.metrics:
                if metric not in valid:
                    raise ValueError(
                        f"unknown metric {metric!r} for task {self.task}; valid: {valid}"
                    )
        return self

    @model_validator(mode="after")
    def _alert_rules(self) -> ModelConfig:
        problems: list[str] = []
        names: set[str] = set()
        for i, rule in enumerate(self.alerts):
            where = f"alerts[{i}]({rule.name})"
            if rule.name in names:
                problems.append(f"{where}.name: rule names must be unique in a model")
            names.add(rule.name)
            if rule.signal is None:
                continue
            try:
                self.check_signal(rule.signal, rule.kind)
            except ValueError as exc:
                problems.append(f"{where}.signal: {exc}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def check_signal(self, text: str, kind: str = "threshold") -> None:
        """Raise ValueError unless ``text`` names a signal this model emits."""
        name, subject, window = parse_signal(text)
        if window not in self.windows:
            raise ValueError(f"unknown window {window!r} in {text!r}; this model's: {self.windows}")
        classes = [canonical_class(c) for c in self.classes or []]
        if kind == "detector":
            if name not in DETECTOR_SIGNALS or subject not in DETECTOR_STREAMS:
                raise ValueError(
                    f"{text!r} is not a detector signal; valid: <detector>:<stream>@<window> "
                    f"with detector in {DETECTOR_SIGNALS}, stream in {DETECTOR_STREAMS}"
                )
            self._check_detector(name, subject, text)
            return
        if kind == "label_starvation" and name != "label_coverage":
            raise ValueError(f"a label_starvation rule reads label_coverage@<window>, not {text!r}")
        if name in DRIFT_SIGNALS:
            outputs = [PREDICTION_SUBJECT, LABEL_SUBJECT]
            if self.task == "binary":
                outputs.insert(0, SCORE_SUBJECT)
            if subject not in self.features and subject not in outputs:
                raise ValueError(
                    f"{text!r}: {subject!r} is not a configured feature or one of {outputs}; "
                    f"features: {sorted(self.features)}"
                )
            return
        if name == "gap":
            gap_known = [m for m in TASK_METRICS[self.task] if m in GAP_METRICS]
            if subject not in gap_known:
                raise ValueError(
                    f"{text!r}: gap:<metric> takes a metric of the task: {sorted(gap_known)}"
                )
            return
        if name in DETECTOR_SIGNALS:
            if subject not in DETECTOR_STREAMS:
                raise ValueError(f"{text!r}: detector stream must be one of {DETECTOR_STREAMS}")
            self._check_detector(name, subject, text)
            return
        known = computed_signals(self.task, bool(self.features))
        if name in CLASS_SUBJECT_METRICS and name in known:
            if subject not in classes:
                raise ValueError(f"{text!r}: {subject!r} is not one of the classes {classes}")
        elif name in known:
            if subject is not None:
                raise ValueError(f"{text!r}: {name} takes no ':<subject>'")
        else:
            raise ValueError(
                f"unknown signal name {name!r} in {text!r} for a {self.task} model; valid: "
                f"{sorted(set(known))}, or <drift>:<feature> with drift in {DRIFT_SIGNALS}"
            )
        if self.metrics is not None and SIGNALS[name].labelled:
            base = base_metric(name)
            if base not in self.metrics:
                raise ValueError(f"{text!r}: metric {base!r} is not in this model's metrics")

    def _check_detector(self, name: str, stream: str | None, text: str) -> None:
        """A detector signal must name a configured detector and this model's error stream."""
        if name not in self.detector_names:
            raise ValueError(
                f"{text!r}: detector {name!r} is not in detectors {self.detector_names}"
            )
        expected = "abs_error" if self.task == "regression" else "error"
        if stream != expected:
            raise ValueError(f"{text!r}: a {self.task} model's detectors watch {expected!r}")

    @property
    def window_specs(self) -> tuple[WindowSpec, ...]:
        """The parsed windows, in config order."""
        return tuple(WindowSpec.parse(w) for w in self.windows)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Canonical class names: multiclass classes, or (negative, positive) for binary."""
        if self.task == "multiclass":
            assert self.classes is not None
            return tuple(canonical_class(c) for c in self.classes)
        if self.task == "binary":
            pos = canonical_class(self.positive_class)
            if self.classes is not None:
                neg = next(canonical_class(c) for c in self.classes if canonical_class(c) != pos)
                return (neg, pos)
            return ("__negative__", pos)
        return ()


class MonitorConfig(_Strict):
    """The whole configuration file."""

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)  # type: ignore[arg-type]
    http: HttpConfig = Field(default_factory=HttpConfig)  # type: ignore[arg-type]
    state: StateConfig = Field(default_factory=StateConfig)  # type: ignore[arg-type]
    time: TimeConfig = Field(default_factory=TimeConfig)  # type: ignore[arg-type]
    limits: LimitsConfig = Field(default_factory=LimitsConfig)  # type: ignore[arg-type]
    alertmanager: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig)  # type: ignore[arg-type]
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)  # type: ignore[arg-type]
    readiness: ReadinessConfig = Field(default_factory=ReadinessConfig)  # type: ignore[arg-type]
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)  # type: ignore[arg-type]
    models: list[ModelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_checks(self) -> MonitorConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {dupes}")
        for model in self.models:
            for spec in model.window_specs:
                if spec.kind == "sliding" and not _is_multiple(spec.seconds, self.time.pane):
                    raise ValueError(
                        f"model {model.name!r}: window {spec.name!r} must be a whole number of "
                        f"panes ({self.time.pane:g} s)"
                    )
        return self

    def model(self, name: str) -> ModelConfig:
        """The model named ``name``."""
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


def _is_multiple(span: float, pane: float) -> bool:
    ratio = span / pane
    return abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1


_ENV_OVERRIDES = {
    "MONITOR_KAFKA_BOOTSTRAP": "bootstrap_servers",
    "MONITOR_KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "MONITOR_KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "MONITOR_KAFKA_SASL_USERNAME": "sasl_username",
    "MONITOR_KAFKA_SASL_PASSWORD": "sasl_password",
    "MONITOR_KAFKA_SSL_CAFILE": "ssl_cafile",
    "MONITOR_KAFKA_SSL_CERTFILE": "ssl_certfile",
    "MONITOR_KAFKA_SSL_KEYFILE": "ssl_keyfile",
    "MONITOR_KAFKA_CLIENT": "client",
}


def _key_path(loc: tuple[int | str, ...], raw: Mapping[str, Any]) -> str:
    """``models[0].alerts[1].threshold``, with the model's name when it has one."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node) and isinstance(node[item], dict):
                name = node[item].get("name")
                if isinstance(name, str):
                    label = f"[{item}]({name})"
            parts.append(label)
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(("." if parts else "") + item)
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(file)"


def config_from_mapping(raw: Mapping[str, Any], path: str = "<config>") -> MonitorConfig:
    """Validate a parsed TOML document, applying environment overrides; raise ConfigError."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    overrides = {key: os.environ[env] for env, key in _ENV_OVERRIDES.items() if os.environ.get(env)}
    if overrides:
        kafka = data.get("kafka", {})
        data["kafka"] = {**(kafka if isinstance(kafka, dict) else {}), **overrides}
    if os.environ.get("MONITOR_STATE_HMAC_KEY"):
        state = data.get("state", {})
        data["state"] = {**(state if isinstance(state, dict) else {}),
                         "hmac_key": os.environ["MONITOR_STATE_HMAC_KEY"]}  # fmt: skip
    from monitor.envconfig import apply_env

    data, unknown, from_env = apply_env(data, os.environ, MonitorConfig)
    if unknown:
        raise ConfigError(path, [f"{path}: environment {line}" for line in unknown])
    try:
        return MonitorConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(
                p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))
            )
            msg = err["msg"].removeprefix("Value error, ")
            for line in msg.splitlines():
                # A model's cross-checks of its rules name the rule and key themselves.
                sep = "." if line.startswith("alerts[") else ": "
                problems.append(f"{path}: {_key_path(loc, data)}{sep}{line}")
        if from_env:
            problems.append(f"{path}: (with values from the environment: {', '.join(from_env)})")
        raise ConfigError(path, problems) from None


def load_config(path: str | os.PathLike[str]) -> MonitorConfig:
    """Read, parse and validate a TOML config file; raise ConfigError naming file and key."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(name, [f"{name}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(name, [f"{name}: not UTF-8 text: {exc.reason}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, [f"{name}: invalid TOML: {exc}"]) from None
    config = config_from_mapping(raw, name)
    base = Path(path).resolve().parent
    state_dir = Path(config.state.dir)
    updates: dict[str, Any] = {}
    if not state_dir.is_absolute():
        updates["state"] = config.state.model_copy(update={"dir": str(base / state_dir)})
    tb_dir = config.outputs.tensorboard_dir
    if tb_dir and not Path(tb_dir).is_absolute():
        outputs = {"tensorboard_dir": str(base / tb_dir)}
        updates["outputs"] = config.outputs.model_copy(update=outputs)
    models = []
    for model in config.models:
        if model.reference and not Path(model.reference).is_absolute():
            model = model.model_copy(update={"reference": str(base / model.reference)})
        models.append(model)
    updates["models"] = models
    config = config.model_copy(update=updates)
    _check_references(config)
    return config


def _check_references(config: MonitorConfig) -> None:
    """Read every model's reference file once, so a bad one fails at load (exit 2)."""
    from monitor.core.reference import load_profile

    problems: list[str] = []
    path = ""
    for model in config.models:
        try:
            load_profile(model)
        except ConfigError as exc:
            path = path or exc.path
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(path, problems)
