"""Experiment requests: RD-Agent's ExperimentRequest, extended to several strategies.

RD-Agent (``rdagent/core/experiment_request_schema.py``, spec §5.9) knows one ``strategy`` per
request. Comparing strategies needs several, each with a role (one control, the rest
treatments), the loop that runs it and, optionally, its own factor combination. This module
validates both shapes strictly (unknown keys are errors; free-form values belong in ``extra``)
and converts back to the shape RD-Agent's own parser accepts:

* ``strategy`` = the control entry (or the first entry when no control is named), reduced to
  RD-Agent's StrategyConfig fields;
* ``extra.strategies`` = the complete list of entries, so reading that JSON back is lossless.
  ``extra.strategies`` is therefore a reserved key.

Every validation problem surfaces as a :class:`~workbench.errors.ConfigError` whose message
names the source, the field path (``strategies[1].role``) and the problem. A file that cannot
be read at all (missing, a folder, not UTF-8 text) is an :class:`~workbench.errors.InputFileError`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from workbench.errors import ConfigError, InputFileError

__all__ = [
    "DatasetConfig",
    "ExperimentKind",
    "ExperimentRequest",
    "FactorRef",
    "FactorSetConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "StrategyConfig",
    "StrategyEntry",
    "StrategyRole",
    "StrategySource",
    "TrainTestConfig",
    "load_request",
    "load_strategy_config",
    "parse_request",
    "parse_strategy_config",
    "request_to_rdagent_json",
]

ExperimentKind = Literal["research", "benchmark", "ab_test"]
StrategyRole = Literal["control", "treatment"]
StrategySource = Literal["rdagent", "external", "handcrafted"]

_RULE = "request_rule"  # error type of the cross-field rules below


# --------------------------------------------------------------------------- field types


def _iso_date(value: Any) -> Any:
    """Dates as ISO strings or YAML dates; date-times and numbers are rejected, not guessed."""
    if isinstance(value, dt.datetime):
        raise ValueError(f"expected a date (YYYY-MM-DD), got the date-time {value.isoformat()}")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"expected an ISO date (YYYY-MM-DD), got {value!r}") from None
    raise ValueError(f"expected an ISO date string (YYYY-MM-DD), got {type(value).__name__} {value!r}")


def _empty_if_none(factory: type) -> BeforeValidator:
    """RD-Agent treats null dicts/lists as empty (``payload.get(key) or {}``); so do we."""
    return BeforeValidator(lambda value: factory() if value is None else value)


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
FreeDict = Annotated[dict[str, Any], _empty_if_none(dict)]
StrList = Annotated[list[str], _empty_if_none(list)]


def _rule_error(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """One pydantic error carrying several (relative field path, problem) pairs."""
    summary = "; ".join(f"{path}: {problem}" if path else problem for path, problem in problems)
    return PydanticCustomError(_RULE, "{summary}", {"summary": summary, "problems": problems})


class _Strict(BaseModel):
    """Unknown keys are typos until proven otherwise; free-form values go under ``extra``."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- RD-Agent objects


class FactorRef(_Strict):
    """One factor by name and source tag (``qlib_alpha158``, ``rdagent_generated``, ...)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    name: str = Field(min_length=1)
    source: str | None = None
    version: str | None = None


class FactorSetConfig(_Strict):
    """A factor combination."""

    factors: Annotated[list[FactorRef], _empty_if_none(list)] = Field(default_factory=list)
    tags: StrList = Field(default_factory=list)
    extra: FreeDict = Field(default_factory=dict)


class StrategyConfig(_Strict):
    """RD-Agent's StrategyConfig, field for field."""

    strategy_type: str = Field(min_length=1)
    name: str | None = None
    description: str | None = None
    risk_model: FreeDict = Field(default_factory=dict)
    trading_rule: FreeDict = Field(default_factory=dict)
    benchmark: str | None = None
    prompt_template_id: str | None = None
    extra: FreeDict = Field(default_factory=dict)


_DATE_ORDER = ("train_start", "train_end", "valid_start", "valid_end", "test_start", "test_end")


class TrainTestConfig(_Strict):
    """Train/valid/test windows; given dates must be in chronological order."""

    train_start: IsoDate | None = None
    train_end: IsoDate | None = None
    valid_start: IsoDate | None = None
    valid_end: IsoDate | None = None
    test_start: IsoDate | None = None
    test_end: IsoDate | None = None
    dataset_extra: FreeDict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _chronological(self) -> TrainTestConfig:
        problems = []
        latest: tuple[str, dt.date] | None = None
        for name in _DATE_ORDER:
            value = getattr(self, name)
            if value is None:
                continue
            if latest is not None and value < latest[1]:
                problems.append(
                    (
                        name,
                        f"{value} is before {latest[0]} {latest[1]}; expected train_start <= train_end"
                        " <= valid_start <= valid_end <= test_start <= test_end",
                    )
                )
            else:
                latest = (name, value)
        if problems:
            raise _rule_error(problems)
        return self


class ObjectiveConfig(_Strict):
    """What the experiment optimises."""

    primary_metric: str = "ic"
    direction: Literal["maximize", "minimize"] = "maximize"
    constraints: FreeDict = Field(default_factory=dict)


class ModelConfig(_Strict):
    """Qlib ``task.model``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_type: str | None = None
    model_class: str | None = None
    kwargs: FreeDict = Field(default_factory=dict)
    extra: FreeDict = Field(default_factory=dict)


class DatasetConfig(_Strict):
    """Qlib ``task.dataset``; ``segments`` maps a name to ``[start, end]``."""

    class_name: str | None = "DatasetH"
    handler_class: str | None = "Alpha158"
    handler_kwargs: FreeDict = Field(default_factory=dict)
    segments: Annotated[dict[str, tuple[IsoDate, IsoDate]], _empty_if_none(dict)] = Field(
        default_factory=dict
    )
    extra: FreeDict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _segments_ordered(self) -> DatasetConfig:
        problems = [
            (f"segments.{name}", f"start {start} is after end {end}")
            for name, (start, end) in self.segments.items()
            if start > end
        ]
        if problems:
            raise _rule_error(problems)
        return self


# --------------------------------------------------------------------------- workbench extension


class StrategyEntry(StrategyConfig):
    """One strategy of a multi-strategy request: a StrategyConfig plus its place in the comparison."""

    name: str = Field(min_length=1)
    role: StrategyRole = "treatment"
    loop_id: int | None = Field(default=None, ge=0)
    factor_set: FactorSetConfig | None = None
    source: StrategySource = "rdagent"
    external_id: str | None = None

    def to_strategy_config(self) -> StrategyConfig:
        """The RD-Agent view: only StrategyConfig's fields."""
        return StrategyConfig.model_validate(self.model_dump(include=set(StrategyConfig.model_fields)))

    @classmethod
    def from_config(
        cls,
        config: StrategyConfig,
        *,
        role: StrategyRole,
        source: StrategySource,
        name: str | None = None,
        loop_id: int | None = None,
        factor_set: FactorSetConfig | None = None,
        external_id: str | None = None,
    ) -> StrategyEntry:
        """Place a loaded StrategyConfig (e.g. an external file) into a comparison."""
        fields = config.model_dump()
        fields["name"] = name or config.name or config.strategy_type
        return cls.model_validate(
            {
                **fields,
                "role": role,
                "source": source,
                "loop_id": loop_id,
                "factor_set": factor_set,
                "external_id": external_id,
            }
        )


class ExperimentRequest(_Strict):
    """RD-Agent's ExperimentRequest (same fields, same order) plus ``strategies``.

    After validation ``strategy`` always holds the RD-Agent view of the primary entry (the
    control, else the first entry) when ``strategies`` is given.
    """

    kind: ExperimentKind = "research"
    strategy: StrategyConfig | None = None
    factor_set: FactorSetConfig | None = None
    train_test: TrainTestConfig | None = None
    objective: Annotated[ObjectiveConfig, _empty_if_none(ObjectiveConfig)] = Field(
        default_factory=ObjectiveConfig
    )
    model: ModelConfig | None = None
    dataset: DatasetConfig | None = None
    name: str | None = None
    description: str | None = None
    user_tags: StrList = Field(default_factory=list)
    extra: FreeDict = Field(default_factory=dict)
    strategies: Annotated[list[StrategyEntry], _empty_if_none(list)] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _lift_rdagent_strategies(cls, data: Any) -> Any:
        """Accept our own RD-Agent JSON back: ``extra.strategies`` becomes ``strategies``."""
        if not isinstance(data, Mapping):
            return data
        extra = data.get("extra")
        if not (isinstance(extra, Mapping) and "strategies" in extra):
            return data
        if data.get("strategies"):
            raise _rule_error(
                [
                    (
                        "extra.strategies",
                        "reserved for the RD-Agent shape; give strategies only at the top level",
                    )
                ]
            )
        rest = {key: value for key, value in extra.items() if key != "strategies"}
        return {**data, "strategies": extra["strategies"], "extra": rest}

    @model_validator(mode="after")
    def _comparison_rules(self) -> ExperimentRequest:
        problems = _duplicates(self.strategies, "name") + _duplicates(self.strategies, "loop_id")
        controls = [i for i, entry in enumerate(self.strategies) if entry.role == "control"]
        for i in controls[1:]:
            first = controls[0]
            problems.append(
                (
                    f"strategies[{i}].role",
                    f"second control; strategies[{first}] ({self.strategies[first].name!r}) is already"
                    " the control and a request has at most one",
                )
            )
        if self.kind == "ab_test" and len(self.strategies) >= 2 and not controls:
            problems.append(
                ("strategies", "an ab_test with 2 or more strategies needs exactly one role: control")
            )
        if not problems and self.strategies:
            index, primary = _primary(self.strategies)
            projected = primary.to_strategy_config()
            if self.strategy is None:
                self.strategy = projected
            elif self.strategy != projected:
                problems.append(
                    (
                        "strategy",
                        f"disagrees with strategies[{index}] ({primary.name!r}); with strategies, omit"
                        " strategy (it is derived from the control entry)",
                    )
                )
        if problems:
            raise _rule_error(problems)
        return self

    def strategy_entries(self) -> list[StrategyEntry]:
        """Every strategy as an entry; the single RD-Agent ``strategy`` becomes the control."""
        if self.strategies:
            return list(self.strategies)
        if self.strategy is None:
            return []
        return [StrategyEntry.from_config(self.strategy, role="control", source="rdagent")]

    def control_entry(self) -> StrategyEntry | None:
        """The control, if the request names one."""
        return next((entry for entry in self.strategy_entries() if entry.role == "control"), None)

    def factor_set_for(self, entry: StrategyEntry) -> FactorSetConfig | None:
        """The entry's own factor combination, else the request-wide one."""
        return entry.factor_set if entry.factor_set is not None else self.factor_set


def _duplicates(entries: list[StrategyEntry], field: str) -> list[tuple[str, str]]:
    """Problems for every repeated (non-null) value of ``field``, pointing at the later entry."""
    first_seen: dict[Any, int] = {}
    problems = []
    for i, entry in enumerate(entries):
        value = getattr(entry, field)
        if value is None:
            continue
        if value in first_seen:
            problems.append(
                (
                    f"strategies[{i}].{field}",
                    f"duplicate {field} {value!r} (also strategies[{first_seen[value]}])",
                )
            )
        else:
            first_seen[value] = i
    return problems


def _primary(entries: list[StrategyEntry]) -> tuple[int, StrategyEntry]:
    """The control, else the first entry: what RD-Agent runs when it sees one strategy."""
    return next(((i, e) for i, e in enumerate(entries) if e.role == "control"), (0, entries[0]))


# --------------------------------------------------------------------------- errors


def _format_loc(loc: tuple[int | str, ...]) -> str:
    """('strategies', 1, 'role') -> 'strategies[1].role'."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _describe(error: Mapping[str, Any]) -> str:
    """A short, human message for one pydantic error."""
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field; put free-form settings under 'extra'"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        return message
    shown = repr(error.get("input"))
    return f"{message} (got {shown[:60] + '...' if len(shown) > 60 else shown})"


def _config_error(error: ValidationError, *, source: str) -> ConfigError:
    """One ConfigError listing every problem as 'path: problem'."""
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        base = _format_loc(item["loc"])
        if item["type"] == _RULE:
            for path, problem in item["ctx"]["problems"]:
                problems.append((".".join(p for p in (base, path) if p), problem))
        else:
            problems.append((base, _describe(item)))
    lines = [f"{path or '<top level>'}: {problem}" for path, problem in problems]
    if len(lines) == 1:
        return ConfigError(f"{source}: {lines[0]}")
    return ConfigError(f"{source}: {len(lines)} problems:\n  " + "\n  ".join(lines))


# --------------------------------------------------------------------------- loading


def _read_mapping(path: Path) -> Mapping[str, Any]:
    """A YAML (.yaml/.yml) or JSON (.json) file whose top level is a mapping."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .json, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, "file not found", hint="check the path") from None
    except IsADirectoryError:
        raise InputFileError(
            path, "is a folder, not a file", hint=f"give the path of a {suffix} file"
        ) from None
    except UnicodeDecodeError as error:
        raise InputFileError(
            path, f"not UTF-8 text ({error.reason} at byte {error.start})", hint="save the file as UTF-8"
        ) from error
    except OSError as error:
        raise InputFileError(
            path, f"cannot read the file ({error.strerror or type(error).__name__})"
        ) from error
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from error
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of fields, got {type(data).__name__}")
    return data


def parse_request(data: Mapping[str, Any], *, source: str = "<request>") -> ExperimentRequest:
    """Validate an already-loaded request; ``source`` names it in error messages."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a request must be a mapping of fields, got {type(data).__name__}")
    try:
        return ExperimentRequest.model_validate(dict(data))
    except ValidationError as error:
        raise _config_error(error, source=source) from error


def load_request(path: Path) -> ExperimentRequest:
    """Read and validate a request file (JSON or YAML by suffix)."""
    return parse_request(_read_mapping(path), source=str(path))


def parse_strategy_config(data: Mapping[str, Any], *, source: str = "<strategy>") -> StrategyConfig:
    """Validate one StrategyConfig mapping; ``source`` names it in error messages."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a strategy must be a mapping of fields, got {type(data).__name__}")
    try:
        return StrategyConfig.model_validate(dict(data))
    except ValidationError as error:
        raise _config_error(error, source=source) from error


def load_strategy_config(path: Path) -> StrategyConfig:
    """Read one external StrategyConfig file (JSON or YAML by suffix)."""
    return parse_strategy_config(_read_mapping(path), source=str(path))


def request_to_rdagent_json(request: ExperimentRequest) -> dict[str, Any]:
    """The request as RD-Agent's parser wants it: JSON-ready, RD-Agent's fields only.

    ``strategy`` is the primary entry's StrategyConfig; all entries (control included) travel
    under ``extra.strategies`` so :func:`parse_request` restores the request unchanged.
    """
    data = request.model_dump(mode="json", exclude={"strategies"})
    if request.strategies:
        data["extra"] = {
            **data["extra"],
            "strategies": [e.model_dump(mode="json") for e in request.strategies],
        }
    return data
