"""Settings of the daemon: one TOML file, validated at load, frozen afterwards.

Every error names the file, the key path and the reason, so that
``monitor check-config`` and ``monitor run`` fail before touching Kafka.
Connection settings can be overridden from the environment
(``MONITOR_KAFKA_BOOTSTRAP``, ``MONITOR_KAFKA_SECURITY_PROTOCOL``,
``MONITOR_KAFKA_SASL_MECHANISM``, ``MONITOR_KAFKA_SASL_USERNAME``,
``MONITOR_KAFKA_SASL_PASSWORD``, ``MONITOR_KAFKA_SSL_CAFILE``,
``MONITOR_KAFKA_SSL_CERTFILE``, ``MONITOR_KAFKA_SSL_KEYFILE``) so a container
runs the same file anywhere.
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

__all__ = [
    "ConfigError",
    "ModelConfig",
    "MonitorConfig",
    "WindowSpec",
    "canonical_class",
    "load_config",
    "parse_duration",
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


BINARY_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "specificity",
    "balanced_accuracy",
    "mcc",
    "log_loss",
    "brier",
    "roc_auc",
    "pr_auc",
)
MULTICLASS_METRICS = (
    "accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "micro_precision",
    "micro_recall",
    "micro_f1",
    "weighted_precision",
    "weighted_recall",
    "weighted_f1",
    "class_recall",
)
REGRESSION_METRICS = ("mae", "rmse", "mape", "r2", "mean_error")
UNLABELLED_METRICS = (
    "prediction_count",
    "positive_rate",
    "class_share",
    "score_mean",
    "prediction_mean",
)
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": BINARY_METRICS,
    "multiclass": MULTICLASS_METRICS,
    "regression": REGRESSION_METRICS,
}

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
    max_message_bytes: int = Field(
        1_048_576, gt=0, description="larger messages are rejected as too_large"
    )
    fetch_max_bytes: int = Field(52_428_800, gt=0, description="most bytes one fetch returns")

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


class StateConfig(_Strict):
    """Where checkpoints go and how often they are written."""

    dir: str = Field("state", description="local checkpoint directory (relative to the config)")
    checkpoint_interval: Duration = Field(10.0, gt=0, description="wall time between checkpoints")


class TimeConfig(_Strict):
    """Event-time resolution of windows and how long the watermark waits."""

    pane: Duration = Field(10.0, gt=0, description="event-time width of a pane")
    allowed_lateness: Duration = Field(60.0, description="how far the watermark trails event time")
    idle_timeout: Duration = Field(
        30.0,
        gt=0,
        description="wall time before a silent, caught-up partition stops holding the watermark",
    )


class AlertRuleConfig(BaseModel):
    """An alert rule; its kinds and checks belong to the rule engine (accepted as written here)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    signal: str | None = None


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
    reference: str | None = None
    alerts: list[AlertRuleConfig] = Field(default_factory=list)

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
        if self.metrics is not None:
            valid = TASK_METRICS[self.task] + UNLABELLED_METRICS
            for metric in self.metrics:
                if metric not in valid:
                    raise ValueError(
                        f"unknown metric {metric!r} for task {self.task}; valid: {valid}"
                    )
        return self

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


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


_ENV_OVERRIDES = {
    "MONITOR_KAFKA_BOOTSTRAP": "bootstrap_servers",
    "MONITOR_KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "MONITOR_KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "MONITOR_KAFKA_SASL_USERNAME": "sasl_username",
    "MONITOR_KAFKA_SASL_PASSWORD": "sasl_password",
    "MONITOR_KAFKA_SSL_CAFILE": "ssl_cafile",
    "MONITOR_KAFKA_SSL_CERTFILE": "ssl_certfile",
    "MONITOR_KAFKA_SSL_KEYFILE": "ssl_keyfile",
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
    try:
        return MonitorConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(
                p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))
            )
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: {_key_path(loc, data)}: {msg}")
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
    models = []
    for model in config.models:
        if model.reference and not Path(model.reference).is_absolute():
            model = model.model_copy(update={"reference": str(base / model.reference)})
        models.append(model)
    updates["models"] = models
    return config.model_copy(update=updates)
