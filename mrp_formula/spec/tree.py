"""The spec: a TOML file turned into one frozen, typed tree that later steps alone see.

``load_spec(path)`` reads the file (following ``extends``), applies ``--set`` overrides,
validates it with the pydantic models below and reports every problem at once as
``FILE:LINE: dotted.key: what is wrong (got X); how to fix it``.
"""

from __future__ import annotations

import copy
import json
import re
import tomli as tomllib  # TOML 1.1 (multi-line inline tables, as in the grammar)
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from mrp_formula.errors import Problem, SpecError, UsageError, did_you_mean
from mrp_formula.spec.families import FAMILIES as FAMILY_TABLE
from mrp_formula.spec.levels import canon
from mrp_formula.spec.priors import PriorSpec, PriorSyntaxError, parse_prior
from mrp_formula.spec.tomlpos import key_lines, line_of, syntax_error_position

FAMILIES = tuple(FAMILY_TABLE)  # the names of the records in spec/families.py
SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
VI_REMOVED = ('"vi" (variational inference) was removed: its approximation stopped far from the posterior '
              'without a warning, was overconfident about group effects, and cannot be checked (no R-hat or '
              'ESS); use sampler = "nutpie" (the default; docs/architecture.md says why)')
# what to add for a missing table (a missing plain key gets `add `key = ...``)
MISSING_TABLE = {
    ("data",): 'add a [data] table: source = "sample.csv"',
    ("model",): 'add a [model] table: formula = "y ~ x + (1 | g)" and family',
    ("population",): 'add a [population] table: source = "cells.csv" with weight = "n", or [population.margins]',
    ("estimands",): "add at least one [estimands.NAME] table, e.g. [estimands.overall] (the population average)",
}
PATH_KEYS = (("data", "source"), ("population", "source"), ("report", "out"), ("calibrate", "source"))


def _level(v: Any) -> str:
    if isinstance(v, (dict, list)):
        raise ValueError("a level is a string or a number")
    return canon(v)


Level = Annotated[str, BeforeValidator(_level)]


def _sampler(v: Any) -> Any:
    if v == "vi":
        raise ValueError(VI_REMOVED)
    return v


def _prior(v: Any) -> PriorSpec:
    if isinstance(v, PriorSpec):
        return v
    try:
        return parse_prior(v)
    except PriorSyntaxError as exc:
        raise ValueError(str(exc)) from None


Prior = Annotated[PriorSpec, BeforeValidator(_prior)]


PARAMETERIZATIONS = Literal["auto", "centered", "noncentered"]
# the branches of `model.parameterization` and of its table's values: not keys the user wrote
_UNION_TAGS = ("every term", "by term", "choice", "centring weight")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# A term of the table: a choice, or a centring weight w set by hand (0 < w < 1: the partially
# non-centred form, offset ~ N(0, sd^w), effects sd^(1 - w) offset; model/plan.py).
TermParameterization = Annotated[
    Annotated[PARAMETERIZATIONS, Tag("choice")] | Annotated[float, Field(gt=0, lt=1), Tag("centring weight")],
    Discriminator(lambda v: "centring weight" if _is_number(v) else "choice"),
]
Parameterization = Annotated[
    Annotated[PARAMETERIZATIONS, Tag("every term")] | Annotated[dict[str, TermParameterization], Tag("by term")],
    Discriminator(lambda v: "by term" if isinstance(v, dict) else "every term"),
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class DataSpec(_Frozen):
    """Where the sample comes from and how it is prepared."""

    source: str = Field(description="CSV, Parquet or DuckDB file, relative to the spec file.")
    query: str | None = Field(
        None, description="SQL run by DuckDB; the source is available as the table `source`."
    )
    rename: dict[str, str] = Field(
        default_factory=dict, description="`{ source_column = \"model_name\" }`; replaces an existing column."
    )
    recode: dict[str, dict[str, Level]] = Field(
        default_factory=dict, description="`recode.VAR = { old = \"new\" }` maps and collapses levels."
    )
    missing: Literal["drop", "error"] = Field(
        "error", description="Rows with a missing model variable: drop them (counted) or stop."
    )
    weights: str | None = Field(
        None, description="Column of frequency weights (whole numbers: a row counts that many times). "
                          "Not survey weights: MRP does the weighting (model the design variables, and let the "
                          "population table weight the cells). Weights that multiply the sample at least "
                          "tenfold are refused when they do not look like counts of identical observations "
                          "(rows repeated in every model column, a continuous outcome, binary cells all of one "
                          "outcome): survey weights would make every interval far too narrow.")
    weights_kind: Literal["frequency"] | None = Field(
        None, description='`"frequency"` declares that `weights` count identical observations, and skips the '
                          "check that refuses weights looking like survey weights.")
    allocation: dict[str, dict[str, float]] | None = Field(
        None, description="Planned share of each arm, e.g. `{ treatment = { control = 0.5, treatment = 0.5 } }`: "
                          "checked for a sample ratio mismatch.")


class JoinSpec(_Frozen):
    """Group-level predictors joined into both the sample and the population by a key."""

    source: str = Field(description="CSV or Parquet file with one row per key.")
    on: dict[str, str] = Field(description="`{ sample_key = \"table_key\" }`.")
    columns: list[str] = Field(description="Columns of the joined table to add.")


STRUCTURE_KINDS = ("iid", "rw1", "rw2", "ar1", "icar", "bym2")
SPATIAL_KINDS = ("icar", "bym2")


def _structure(v: Any) -> Any:
    return {"kind": v} if isinstance(v, str) else v


class StructureSpec(_Frozen):
    """The prior of the effects of one group intercept term `(1|VAR)`, keyed by VAR."""

    kind: Literal[STRUCTURE_KINDS] = Field(
        description='`"iid"` (independent effects, the default), `"rw1"` or `"rw2"` (a first- or second-order '
                    'random walk over the ordered levels), `"ar1"` (a stationary AR(1) over them), `"icar"` or '
                    '`"bym2"` (spatial, over the `adjacency` table). The order of an ordered group is '
                    '`model.levels.VAR`, else the natural order of its levels; the structure covers every level '
                    'of the sample and the population, so a level without sample gets its effect from the '
                    'structure. The term\'s prior in `model.priors` (`"1|VAR"`) sets the scale: the walk\'s '
                    'innovation sd, the AR(1)\'s innovation sd, the ICAR\'s conditional scale, BYM2\'s total sd.')
    adjacency: str | None = Field(
        None, description="icar and bym2 only: CSV file (relative to the spec) with two columns, one pair of "
                          "neighbouring levels per row. Levels without a pair are islands (an independent effect).")

    @model_validator(mode="after")
    def _adjacency(self):
        if self.kind in SPATIAL_KINDS and not self.adjacency:
            raise ValueError(f'a {self.kind} structure needs an adjacency table: '
                             f'{{ kind = "{self.kind}", adjacency = "neighbours.csv" }}')
        if self.kind not in SPATIAL_KINDS and self.adjacency:
            raise ValueError(f"`adjacency` is for icar and bym2 only (this structure is {self.kind}): remove it")
        return self


Structure = Annotated[StructureSpec, BeforeValidator(_structure)]


class ModelSpec(_Frozen):
    """The multilevel model, in Bambi's formula syntax."""

    formula: str = Field(description="e.g. `clicked ~ treatment + (1 | gender)`. The response is a column "
                         "(`p(successes, trials)` for binomial), never a transform such as `log(revenue)`: "
                         "the estimands are on the response's own scale. Transforms are for predictors.")
    family: Literal[FAMILIES] = Field(description="Response distribution.")
    link: str | None = Field(None, description="Link function; the family's default when omitted.")
    levels: dict[str, list[Level]] = Field(
        default_factory=dict, description="Level order per categorical variable; the first is the reference."
    )
    priors: dict[str, Prior] = Field(
        default_factory=dict,
        description='Per term (`Intercept`, a common term, a group term such as `"1|region"`, or the family\'s '
                    '`sigma`, `alpha` or `threshold`): `"Normal(0, 1)"` or `{ dist = "Normal", mu = 0, sigma = 1 }`. '
                    'Terms left out take defaults scaled to the sample rows (Bambi\'s rules; gaussian: by the '
                    'outcome\'s sd); `mrp check` lists every prior used, the manifest records them.',
    )
    formulas: dict[str, str] = Field(
        default_factory=dict,
        description='Formulas of the family\'s auxiliary parameters, right of `~`: `psi = "~ treatment + '
                    '(1|platform)"` models the probability of a non-zero outcome of a hurdle or zero-inflated '
                    'family per cell (logit link; Bambi\'s distributional formula) instead of one psi for every '
                    'cell. Its variables must be predictors of `formula`; priors of its terms are keyed '
                    '`"psi.Intercept"`, `"psi.treatment"`, `"psi.1|platform"` in `[model.priors]`.',
    )
    aggregate: Literal["auto", "always", "never"] = Field(
        "auto", description="Fit bernoulli/binomial models on unique cells with summed successes and trials "
                            "(the same likelihood; Bambi's centring and data-scaled default priors are then "
                            "computed on the cells)."
    )
    parameterization: Parameterization = Field(
        "auto", description='Of group effects: `"auto"` chooses per group term from the data (centred where the '
                            'data pin down each level\'s effect, non-centred where they are thin, a group intercept '
                            'partially non-centred between, with its centring weight from the data); `"centered"` '
                            'or `"noncentered"` for every group term; or a table by term, `{ "1|race:female" = '
                            '"centered" }` (the group terms of `formula`), whose terms not named are `"auto"`; '
                            'a group intercept with a prior on its sd can take a centring weight strictly between '
                            '0 (non-centred) and 1 (centred) there, `{ "1|region" = 0.5 }`, for the partially '
                            'non-centred form. '
                            'The run\'s notes give each term\'s choice and why; the manifest records the '
                            'choices (`model.parameterization`).'
    )
    structure: dict[str, Structure] = Field(
        default_factory=dict,
        description='Structured priors of group intercepts, keyed by the grouping variable of a `(1|VAR)` term: '
                    '`age = "rw1"`, `week = { kind = "ar1" }`, `state = { kind = "bym2", adjacency = '
                    '"state_neighbours.csv" }`. See docs/structured-priors.md.',
    )


class FitSpec(_Frozen):
    """How the posterior is sampled."""

    sampler: Annotated[Literal[SAMPLERS], BeforeValidator(_sampler)] = Field(
        "nutpie", description="MCMC sampler.")
    draws: int = Field(1000, gt=0, description="Draws per chain after tuning.")
    tune: int = Field(1000, ge=0, description="Tuning steps per chain.")
    chains: int = Field(4, gt=0, description="Number of chains.")
    seed: int = Field(20260101, ge=0, description="Random seed: same spec and seed, same numbers.")
    target_accept: float = Field(0.9, gt=0, lt=1, description="NUTS target acceptance rate.")
    mass_matrix: Literal["auto", "low_rank", "diagonal"] = Field(
        "auto", description="Mass matrix nutpie adapts. `low_rank` also learns the strongest correlations "
        "between parameters (an intercept and group effects that trade off when cells hold a lot of data), so "
        "large samples mix far better; `diagonal` is the classic one, safer on thin hierarchical data; `auto` "
        "takes `low_rank` when a group term's median information per level is at least 200. The run reports "
        "the choice. Other samplers use a diagonal one.")


class PopulationSpec(_Frozen):
    """The population to poststratify to: a cell table, or margins."""

    source: str | None = Field(None, description="Cell table (CSV, Parquet, DuckDB), relative to the spec.")
    query: str | None = Field(None, description="SQL over the source (table `source`).")
    weight: str | None = Field(None, description="Column of counts or shares; each row counts 1 if omitted.")
    rename: dict[str, str] = Field(default_factory=dict, description="As in [data].")
    recode: dict[str, dict[str, Level]] = Field(default_factory=dict, description="As in [data].")
    missing: Literal["drop", "error"] = Field("error", description="As in [data].")
    margins: dict[str, dict[str, float]] | None = Field(
        None, description="`VAR = { level = share, ... }`: shares summing to 1, or counts."
    )
    joint: Literal["independent", "rake"] = Field(
        "independent", description="How margins make a joint table: by independence, or raking the sample."
    )
    new_levels: Literal["sample", "error"] = Field(
        "sample", description="Population levels absent from the sample: draw their effect, or stop."
    )
    declared_new: dict[str, list[Level]] = Field(
        default_factory=dict,
        description="Population levels of a group factor known to be absent from the sample, e.g. "
                    '`{ region = ["R3"] }`: their effects are drawn from the fitted group distribution, even with '
                    '`new_levels = "error"`. A new level that looks like a typo of a sample level the population '
                    "lacks (`R3` vs `R03`) is an error unless it is declared here; a declared level must be in the "
                    "population and not in the sample.")

    @model_validator(mode="after")
    def _one_source(self):
        if self.source is None and self.margins is None:
            raise ValueError("give either `source` (a cell table) or `margins`")
        if self.source is not None and self.margins is not None:
            raise ValueError("give `source` or `margins`, not both")
        return self


class EstimandSpec(_Frozen):
    """A population quantity computed per posterior draw."""

    at: dict[str, list[Level]] = Field(
        default_factory=dict, description="Set a variable to each level in every population cell (a "
                                          "counterfactual population); one row per level."
    )
    by: list[str] = Field(default_factory=list, description="Population variables to break down by.")
    contrast: dict[str, list[Level]] | None = Field(
        None, description="`{ VAR = [\"a\", \"b\"] }`: compares a with b. A variable the population table "
                          "lacks: the whole population under a vs under b (counterfactual). A variable it has: "
                          "the cells with a vs the cells with b (two subpopulations)."
    )
    scale: Literal["difference", "ratio", "odds_ratio"] = Field(
        "difference", description="Of a contrast, per draw between the population-averaged outcomes a and b: "
                                  "a - b, a / b, or the marginal odds ratio (not exp(beta)).")
    rope: tuple[float, float] | None = Field(None, description="Region of practical equivalence, on `scale`, around its value of no "
                                                      "difference (0 for a difference, 1 for a ratio or odds ratio).")
    exclude: list[str] = Field(default_factory=list, description="Model terms left out when predicting.")

    @model_validator(mode="after")
    def _check(self):
        if self.contrast is not None:
            if len(self.contrast) != 1:
                raise ValueError("`contrast` compares two levels of one variable: { VAR = [\"a\", \"b\"] }")
            (var, lv), = self.contrast.items()
            if len(lv) != 2 or lv[0] == lv[1]:
                raise ValueError(f"`contrast.{var}` needs two different levels (got {lv})")
            if var in self.at:
                raise ValueError(f"`{var}` is both in `contrast` and in `at`; keep one")
        twice = sorted({v for v in self.by if self.by.count(v) > 1})
        if twice:
            raise ValueError(f"`by` names {', '.join(repr(v) for v in twice)} more than once; list each variable "
                             f"once (got {self.by})")
        for var in set(self.by) & (set(self.at) | set(self.contrast or {})):
            where = "contrast" if self.contrast and var in self.contrast else "at"
            raise ValueError(f"`{var}` is both in `by` and in `{where}`; a variable is either broken down by "
                             f"or set, not both: remove it from one")
        if self.rope is not None and self.rope[0] >= self.rope[1]:
            raise ValueError(f"`rope` must be [low, high] with low < high (got {list(self.rope)})")
        if self.rope is not None and self.contrast is None:
            raise ValueError("`rope` applies to a `contrast`; add one or remove the rope")
        if self.rope is not None:
            null = 0.0 if self.scale == "difference" else 1.0
            if not self.rope[0] <= null <= self.rope[1]:
                example = "[-0.01, 0.01]" if self.scale == "difference" else "[0.98, 1.02]"
                raise ValueError(f"`rope` {list(self.rope)} does not contain {null:g}, the {self.scale.replace('_', ' ')} "
                                 f"of no difference: a region of practical equivalence lies around no difference, "
                                 f"in the units of `scale` (\"{self.scale}\"), e.g. {example}")
        for var, lv in self.at.items():
            if not lv:
                raise ValueError(f"`at.{var}` lists no level")
        return self


class CalibrateSpec(_Frozen):
    """Known population means of the outcome per level of a population variable (an election
    result, a registered count): every draw's predictions of a level are shifted on the link
    scale until their poststratified mean equals the known value (Ghitza & Gelman 2013's logit
    shift), and every estimand is computed from the shifted predictions."""

    by: str = Field(description="Population variable whose levels have known means (e.g. `state`).")
    source: str = Field(description="CSV or Parquet file, relative to the spec, with one row per level of `by` "
                                    "and a column named like `by`.")
    column: str = Field(description="Column of `source` holding the known population mean of the outcome in "
                                    "each level (a share in (0, 1) for bernoulli and binomial, a positive mean "
                                    "for poisson and negativebinomial).")


class ReportSpec(_Frozen):
    """How results are summarised and where they go."""

    ci_prob: float = Field(0.95, gt=0, lt=1, description="Probability of the credible intervals.")
    ci_kind: Literal["hdi", "eti"] = Field("eti", description="Highest density or equal-tailed interval.")
    out: str | None = Field(None, description="Run folder; default `runs/<name>` beside the current directory.")
    plots: bool = Field(True, description="Write PNG plots to the run folder.")
    rhat_max: float = Field(1.01, gt=1, description="Largest acceptable R-hat of an estimand (and warned for "
                                                    "parameters); `--strict` fails above it.")
    ess_min: float = Field(400, gt=0, description="Smallest acceptable bulk effective sample size of an estimand.")
    divergences_max: int = Field(0, ge=0, description="Most divergent transitions accepted under `--strict`.")


class Spec(_Frozen):
    """A whole analysis."""

    schema_: str | None = Field(None, alias="$schema", description="JSON Schema for editors.")
    name: str = Field(description="Name of the analysis; names the run folder.")
    description: str = Field("", description="Free text.")
    extends: str | None = Field(None, description="Another spec this one overrides (deep merge).")
    data: DataSpec
    join: list[JoinSpec] = Field(default_factory=list)
    model: ModelSpec
    fit: FitSpec = Field(default_factory=FitSpec)
    population: PopulationSpec
    estimands: dict[str, EstimandSpec] = Field(min_length=1, description="At least one estimand.")
    calibrate: CalibrateSpec | None = Field(None, description="Calibration to known means per level of a "
                                                              "population variable (the logit shift).")
    report: ReportSpec = Field(default_factory=ReportSpec)
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named variants of this spec for `mrp batch`: each is a table whose keys are `--set` paths "
                    "(`\"model.formula\" = \"y ~ x + (1 | g)\"`, `\"model.priors.x\" = \"Normal(0, 1)\"`, "
                    "`\"fit.draws\" = 2000`) and whose values replace the spec's. `mrp batch` runs the spec "
                    "itself (variant `base`) and every variant; `mrp run --set` runs one by hand.")


VARIANT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
RESERVED_VARIANTS = ("base", "stacked")  # the spec itself and the stacking mixture, in `mrp batch`
NOT_IN_VARIANTS = ("variants", "extends", "$schema")


class LoadedSpec(_Frozen):
    """The validated spec with where it came from; paths resolved against the spec file."""

    spec: Spec
    path: Path
    text: str
    raw: dict
    lines: dict
    frames: Any = None  # {"data": DataFrame, "population": DataFrame}: tables given in memory (``run(data=df)``)
    overridden: frozenset = frozenset()  # the key paths given with --set (or a variant)
    origins: Any = None  # key path -> (file, line) where it was written, through `extends`

    def written_in(self, key: str) -> tuple[str, int | None] | None:
        """(file, line) of the dotted ``key`` (or the nearest table above it) when a spec this one
        extends wrote it, so that a problem of it is placed there; None when this file did."""
        best = None
        for path, where in (self.origins or {}).items():
            d = dotted(path)
            if (key == d or key.startswith(d + ".")) and (best is None or len(d) > len(best[0])):
                best = (d, where)
        if best is None or Path(best[1][0]) == self.path:
            return None
        return best[1]

    def set_by_override(self, key: str) -> bool:
        """Whether the dotted ``key`` of a problem lies in a value given with --set (so that the
        problem is placed there, not in the file)."""
        return any(key == d or key.startswith(d + ".") for d in (dotted(p) for p in self.overridden))

    def frame(self, section: str):
        """The DataFrame given in memory for ``section`` ("data" or "population"), else None."""
        return (self.frames or {}).get(section)

    def source_label(self, section: str) -> str:
        """How messages name a section's table: its key, or "data (DataFrame)" when given in memory."""
        return f"{section} (DataFrame)" if self.frame(section) is not None else f"{section}.source"

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def line(self, *key) -> int | None:
        return line_of(self.lines, tuple(key))


# --------------------------------------------------------------------------- loading


def load_spec(path: str | Path, overrides: tuple[str, ...] | list[str] = (), *, frames: dict | None = None,
              text: str | None = None, skip_bad_priors: bool = False) -> LoadedSpec:
    """Read, merge, override and validate a spec; raise :class:`SpecError` listing every problem.

    ``frames`` ({"data": df, "population": df}) are tables given in memory: each takes the place of
    its section's ``source``, which the spec may then leave out. ``text``: the spec's text, given
    instead of reading ``path`` (a batch task carries it to a worker); paths in it are still
    relative to ``path``'s folder. ``skip_bad_priors`` leaves out the priors that do not parse (so
    that ``mrp check`` can report the rest of the spec's problems with theirs)."""
    path = Path(path)
    if text is None and not path.is_file():
        raise SpecError(Problem("spec file not found", file=str(path),
                                hint="check the path; `mrp init NAME.toml` writes a starter spec"))
    raw, text, origins = _read_with_extends(path.resolve(), (), text)
    problems: list[Problem] = []
    raw, overridden = apply_overrides(raw, overrides)
    if skip_bad_priors:
        raw = _without_bad_priors(raw)
    frames = {k: v for k, v in (frames or {}).items() if v is not None}
    problems += _in_memory(raw, frames, str(path), key_lines(text))
    lines = key_lines(text)
    spec = None
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, str(path), origins, overridden))
    formula = raw.get("model", {}).get("formula") if isinstance(raw.get("model"), dict) else None
    if isinstance(formula, str):
        from mrp_formula.spec.formula import describe

        given = ("model", "formula") in {tuple(o) for o in overridden}  # by --set: said there, not at the file's line
        try:
            describe(formula, file="--set" if given else str(path),
                     line=None if given else line_of(lines, ("model", "formula")))
        except SpecError as exc:
            problems.extend(exc.problems)
    if spec is not None and spec.variants:
        problems.extend(_variant_problems(raw, spec, str(path), path.resolve().parent, lines))
    if problems:
        raise SpecError(problems)
    return LoadedSpec(spec=spec, path=path.resolve(), text=text, raw=raw, lines=lines, frames=frames or None,
                      overridden=frozenset(overridden), origins=origins)


def _without_bad_priors(raw: dict) -> dict:
    """``raw`` without the entries of ``model.priors`` that do not parse as priors."""
    model = raw.get("model")
    priors = model.get("priors") if isinstance(model, dict) else None
    if not isinstance(priors, dict):
        return raw
    good = {}
    for key, value in priors.items():
        try:
            _prior(value)
        except ValueError:
            continue
        good[key] = value
    return {**raw, "model": {**model, "priors": good}}


FRAME_SOURCE = "(DataFrame)"  # data.source / population.source of a table given in memory


def _in_memory(raw: dict, frames: dict, file: str, lines: dict) -> list[Problem]:
    """Put each in-memory table in its section's ``source`` (so the spec may leave it out)."""
    problems = []
    for section, df in frames.items():
        if section not in ("data", "population"):
            problems.append(Problem(f"'{section}' is not a table a DataFrame can replace", key=section,
                                    hint="pass data=... (the sample) or population=... (the cell table)"))
            continue
        if not hasattr(df, "columns"):
            problems.append(Problem(f"{section}= must be a pandas DataFrame", key=f"{section} (DataFrame)",
                                    got=type(df).__name__))
            continue
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            continue  # the spec's own problem is reported by validation
        if section == "population" and table.get("margins") is not None:
            problems.append(Problem("the spec gives population.margins and a population DataFrame was passed",
                                    key="population.margins", file=file,
                                    line=line_of(lines, ("population", "margins")),
                                    hint="remove the margins from the spec, or do not pass population="))
            continue
        table["source"] = FRAME_SOURCE
    return problems


def toml_value(value: Any) -> str:
    """A value as TOML text (what ``--set KEY=TEXT`` reads back to the same value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a TOML basic string: JSON's escapes, and DEL escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    return toml_value(str(value))


def variant_overrides(loaded: LoadedSpec, name: str) -> tuple[str, ...]:
    """The ``--set`` overrides that make variant ``name`` of a spec; paths made absolute against
    the spec's folder (as the spec's own paths are)."""
    variants = loaded.spec.variants
    if name not in variants:
        raise UsageError(Problem(f"the spec has no variant '{name}'", key="variants", file=str(loaded.path),
                                 hint=did_you_mean(name, list(variants)) or "see its [variants.NAME] tables"))
    return tuple(f"{key}={toml_value(_variant_value(key, value, loaded.base_dir))}"
                 for key, value in variants[name].items())


def override_path(key: str) -> tuple[str, ...]:
    """The keys of a ``--set`` (or variant) path: dotted as in TOML, with a part in quotes where it
    holds a dot or a character a bare TOML key cannot (``model.priors."1|race:female"``); a part
    written bare is taken as it is (``model.priors.1|gender``), dots excepted."""
    try:
        node = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        return tuple(key.split("."))
    parts = []
    while isinstance(node, dict) and len(node) == 1:
        (k, node), = node.items()
        parts.append(k)
    return tuple(parts)


def _variant_value(key: str, value: Any, base: Path) -> Any:
    return with_absolute_paths(override_path(key), value, base)


def with_absolute_paths(parts: tuple[str, ...], value: Any, base: Path) -> Any:
    """``value`` set at ``parts`` with every file path it holds (a source, an adjacency table, a
    join's source; in a table given whole too) made absolute from ``base``, as the spec's own
    paths are from its folder."""
    tree: Any = copy.deepcopy(value)
    for part in reversed(parts):
        tree = {part: tree}
    _absolutize_paths(tree, base)
    for part in parts:
        tree = tree[part]
    return tree


def _variant_problems(raw: dict, spec: Spec, file: str, base: Path, lines: dict) -> list[Problem]:
    """Each variant checked like ``--set``, its problems at the variant's key in the file."""
    problems: list[Problem] = []
    for name, table in spec.variants.items():
        where_name = {"file": file, "line": line_of(lines, ("variants", name)), "key": dotted(("variants", name))}
        if not VARIANT_NAME.match(name) or name in RESERVED_VARIANTS:
            problems.append(Problem(f"'{name}' cannot name a variant" + (
                " (it is reserved: " + " and ".join(RESERVED_VARIANTS) + " label the spec itself and the stacked "
                "mixture)" if name in RESERVED_VARIANTS else ""), **where_name,
                hint="use letters, digits, '_' and '-', starting with a letter, e.g. [variants.no_age]"))
            continue
        if not table:
            problems.append(Problem("a variant with no keys is the spec itself", **where_name,
                                    hint='add a --set path, e.g. "model.formula" = "y ~ x"'))
            continue
        over = {k: _variant_value(k, v, base) for k, v in table.items()}
        paths = {k: override_path(k) for k in over}
        bad = [k for k, p in paths.items() if p[0] in NOT_IN_VARIANTS or "" in p]
        for k in bad:
            problems.append(Problem(f"a variant cannot set '{k}'", file=file, key=dotted(("variants", name, k)),
                                    line=line_of(lines, ("variants", name, k)),
                                    hint="a variant's keys are --set paths such as \"model.formula\" or "
                                         "\"fit.draws\""))
        if bad:
            continue
        merged = copy.deepcopy(raw)
        merged.pop("variants", None)
        try:
            merged, _ = apply_overrides(merged, [f"{k}={toml_value(v)}" for k, v in over.items()])
        except UsageError as exc:
            for p in exc.problems:
                problems.append(Problem(p.message, **where_name, hint=p.hint))
            continue
        found: list[Problem] = []
        try:
            Spec.model_validate(merged)
        except ValidationError as exc:
            overridden = set(paths.values())
            for p, err in zip(_pydantic_problems(exc, file, {}, overridden), exc.errors()):
                loc = _user_loc(err["loc"])
                k = next((k for k, o in paths.items() if loc[: len(o)] == o or o[: len(loc)] == loc), None)
                if k is None:
                    continue  # a problem of the spec itself, reported there
                found.append(Problem(p.message, file=file, key=f"{dotted(('variants', name, k))} ({dotted(loc)})",
                                     line=line_of(lines, ("variants", name, k)), got=p.got, hint=p.hint))
        formula = over.get("model.formula")
        if isinstance(formula, str) and not found:
            from mrp_formula.spec.formula import describe

            try:
                describe(formula, file=file, line=line_of(lines, ("variants", name, "model.formula")))
            except SpecError as exc:
                found.extend(exc.problems)
        problems.extend(found)
    return problems


def _read_toml(path: Path, text: str | None = None) -> tuple[dict, str]:
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(Problem(f"cannot read the spec: {exc}", file=str(path))) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        line, msg = syntax_error_position(exc)
        hint = "fix the TOML syntax (quotes, brackets, `key = value`)"
        if "overwrite" in msg.lower() and line:
            from mrp_formula.spec.tomlpos import _parse_key

            parsed = _parse_key(text.splitlines()[line - 1].strip(), 0)
            if parsed:
                msg = f"`{'.'.join(parsed[0])}` is given twice"
                hint = "keep one of the two"
        raise SpecError(Problem(f"TOML syntax error: {msg}", file=str(path), line=line, hint=hint)) from None


Origins = dict  # key path -> (file, line): where each key was written, through `extends`


def spec_files(path) -> tuple[Path, ...]:
    """The spec file and every file it extends (through ``extends``, however deep)."""
    path = Path(path).resolve()
    _, _, origins = _read_with_extends(path, ())
    return tuple(dict.fromkeys([path] + [Path(f) for f, _ in origins.values()]))


def _read_with_extends(path: Path, seen: tuple[Path, ...], text: str | None = None) -> tuple[dict, str, Origins]:
    raw, text = _read_toml(path, text)
    _absolutize_paths(raw, path.parent)
    lines = key_lines(text)
    origins = {k: (str(path), v) for k, v in lines.items()}
    parent = raw.get("extends")
    if parent is None:
        return raw, text, origins
    where = {"key": "extends", "file": str(path), "line": line_of(lines, ("extends",))}
    if not isinstance(parent, str):
        raise SpecError(Problem("must be a path to another spec", got=repr(parent), **where))
    base_path = (path.parent / parent).resolve()
    chain = seen + (path,)
    if base_path in chain:
        cycle = " -> ".join(p.name for p in chain + (base_path,))
        raise SpecError(Problem(f"`extends` makes a cycle: {cycle}",
                                hint="remove `extends` from one of these files", **where))
    if not base_path.is_file():
        raise SpecError(Problem(f"the spec it extends does not exist: {base_path}",
                                hint="paths are relative to the spec file", **where))
    base, _, base_origins = _read_with_extends(base_path, chain)
    merged = deep_merge(base, raw)
    merged.pop("extends", None)
    return merged, text, {**base_origins, **origins}


def _absolutize_paths(raw: dict, base: Path) -> None:
    """Paths are relative to the file that wrote them; make them absolute before merging."""
    for section, key in PATH_KEYS:
        table = raw.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            table[key] = str((base / Path(table[key]).expanduser()).resolve())
    for join in raw.get("join", []) if isinstance(raw.get("join"), list) else []:
        if isinstance(join, dict) and isinstance(join.get("source"), str):
            join["source"] = str((base / Path(join["source"]).expanduser()).resolve())
    model = raw.get("model")
    structure = model.get("structure") if isinstance(model, dict) else None
    for entry in structure.values() if isinstance(structure, dict) else ():
        if isinstance(entry, dict) and isinstance(entry.get("adjacency"), str):
            entry["adjacency"] = str((base / Path(entry["adjacency"]).expanduser()).resolve())


def deep_merge(base: dict, over: dict) -> dict:
    """Tables merge key by key; any other value in ``over`` replaces the one in ``base``."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(raw: dict, overrides) -> tuple[dict, set]:
    """``--set fit.draws=200``: the value is read as TOML (a bare word is a string).

    Returns the new tree and the set of overridden key paths (so errors can say "--set").
    """
    raw = copy.deepcopy(raw)
    done = set()
    for item in overrides:
        if "=" not in item:
            raise UsageError(Problem("an override is KEY=VALUE", key="--set", got=repr(item),
                                     hint='e.g. --set fit.draws=200 or --set model.formula="y ~ x"'))
        key, value_text = item.split("=", 1)
        key = key.strip()
        try:
            value = tomllib.loads(f"v = {value_text}")["v"]
        except tomllib.TOMLDecodeError:
            value = value_text
        parts = list(override_path(key))
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UsageError(Problem("cannot set a key inside a value that is not a table", key="--set",
                                         got=repr(item)))
        node[parts[-1]] = with_absolute_paths(tuple(parts), value, Path.cwd())  # relative to where mrp runs
        done.add(tuple(parts))
    return raw, done


def _fields_of(model: type[BaseModel], loc: tuple) -> list[str]:
    """The allowed keys at ``loc`` (for 'did you mean')."""
    from typing import get_args, get_origin

    node: Any = model
    skip = False  # the next part is a key of a dict (an estimand's name)
    for part in loc:
        if skip or isinstance(part, int):
            skip = False
            continue
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return []
        field = node.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        skip = get_origin(annotation) is dict or any(get_origin(a) is dict for a in get_args(annotation))
        node = _inner_model(annotation)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items()]
    return []


def _inner_model(annotation) -> Any:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def toml_key(text) -> str:
    """A key as TOML reads it: bare when it can be, else quoted (``55+`` -> ``"55+"``)."""
    text = str(text)
    return text if text and text.replace("_", "").replace("-", "").isalnum() and text.isascii() else json.dumps(text)


def to_toml(raw: dict) -> str:
    """A spec's table as TOML text (``tomllib.loads(to_toml(raw)) == raw``): the spec as a run used
    it, ``extends`` resolved and ``--set`` applied, for the run folder's readers."""
    lines: list[str] = []

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
        if isinstance(v, int):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{toml_key(k)} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(str(v), ensure_ascii=False)

    def tables_of(v) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    def table(prefix: tuple, d: dict) -> None:
        plain = [(k, v) for k, v in d.items() if not isinstance(v, dict) and not tables_of(v)]
        children = [k for k, v in d.items() if isinstance(v, dict)]
        if prefix and (plain or not children):
            lines.append(("\n" if lines else "") + f"[{'.'.join(toml_key(k) for k in prefix)}]")
        lines.extend(f"{toml_key(k)} = {value(v)}" for k, v in plain)
        for k in children:
            table(prefix + (k,), d[k])
        for k, v in d.items():
            for item in v if tables_of(v) else ():
                lines.append(f"\n[[{'.'.join(toml_key(x) for x in prefix + (k,))}]]")
                lines.extend(f"{toml_key(a)} = {value(b)}" for a, b in item.items())

    table((), raw)
    return "\n".join(lines) + "\n"


def recode_example(section: str, var: str, mapping: dict) -> str:
    """A recode the user can paste: ``population.recode.age = { "65+" = "55+" }``."""
    pairs = ", ".join(f"{toml_key(k)} = {json.dumps(v)}" for k, v in mapping.items())
    return f"{dotted((section, 'recode', var))} = {{ {pairs} }}"


def dotted(loc: tuple) -> str:
    """``('model', 'priors', '1|g')`` -> ``model.priors."1|g"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not text.replace("_", "").replace("-", "").isalnum():
                text = f'"{text}"'
            out += ("." if out else "") + text
    return out


def _user_loc(loc: tuple) -> tuple:
    """Pydantic's location of an error as the keys the user wrote (validators dropped, and the
    branch of ``model.parameterization`` that was taken)."""
    out = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
    branch = ("model", "parameterization")
    if out[:2] == branch:
        out = branch + tuple(p for p in out[2:] if p not in _UNION_TAGS)
    return out


TYPE_WORDS = {  # pydantic's kinds of wrong value, in the spec's words ("must be ...", not "Input should be ...")
    "int_parsing": "must be a whole number", "int_type": "must be a whole number",
    "int_from_float": "must be a whole number (it has a fractional part)",
    "float_parsing": "must be a number", "float_type": "must be a number",
    "bool_parsing": "must be true or false", "bool_type": "must be true or false",
    "string_type": "must be text, in quotes", "dict_type": "must be a table: { key = value, ... }",
    "list_type": "must be a list: [a, b, ...]", "tuple_type": "must be a list: [a, b, ...]",
}


def _in_words(kind: str, msg: str, ctx: dict) -> str:
    """pydantic's message of a wrong value as the spec says it."""
    if kind in TYPE_WORDS:
        return TYPE_WORDS[kind]
    for k, words in (("gt", "greater than"), ("ge", "at least"), ("lt", "less than"), ("le", "at most")):
        if k in ctx:
            return f"must be {words} {ctx[k]}"
    if kind == "too_short" and "min_length" in ctx:
        return f"must have at least {ctx['min_length']} item{'s' if ctx['min_length'] != 1 else ''}"
    return msg.removeprefix("Input should be ").join(("must be ", "")) if msg.startswith("Input should be ") else msg


def _pydantic_problems(exc: ValidationError, file: str, origins: Origins, overridden: set) -> list[Problem]:
    problems = _each_pydantic_problem(exc, file, origins, overridden)
    # a misspelt required key is one mistake, said once: the unknown key with its "did you mean"
    meant = {p.key.rsplit(".", 1)[0] + "." + p.hint.split("'")[1] for p in problems
             if p.message == "unknown key" and p.hint.startswith("did you mean '") and "." in p.key}
    meant |= {p.hint.split("'")[1] for p in problems
              if p.message == "unknown key" and p.hint.startswith("did you mean '") and "." not in p.key}
    return [p for p in problems if not (p.message == "required key is missing" and p.key in meant)]


def _each_pydantic_problem(exc: ValidationError, file: str, origins: Origins, overridden: set) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = _user_loc(err["loc"])
        kind = err["type"]
        where_file, line = _origin(origins, loc, file)
        from_set = next((o for o in overridden if loc[: len(o)] == o), None)
        named = re.match(r"(?:Value error, )?`(\w+)`", err["msg"])  # a table's check about one of its keys
        if from_set is None and named and tuple(loc) + (named.group(1),) in {tuple(o) for o in overridden}:
            from_set = tuple(loc) + (named.group(1),)
        if from_set is not None:
            where_file, line = "--set", None
        key = dotted(loc)
        got = None
        hint = ""
        msg = err["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            msg = "unknown key"
            close = did_you_mean(str(loc[-1]), _fields_of(Spec, loc[:-1]))
            hint = close if close.startswith("did you mean") else f"remove it{'; ' + close if close else ''}"
        elif kind == "missing":
            msg = "required key is missing"
            hint = MISSING_TABLE.get(tuple(loc), f"add `{loc[-1]} = ...`")
        elif kind == "literal_error":
            got = repr(err.get("input"))
            expected = err.get("ctx", {}).get("expected", "")
            choices = [c.strip().strip("'") for c in expected.replace(" or ", ", ").split(",") if c.strip()]
            msg = "is not one of the allowed values"
            hint = did_you_mean(str(err.get("input")), choices)
            if loc == ("model", "parameterization") and not hint.startswith("did you mean"):
                hint += ('; a centring weight is set per group term: { "1|x" = 0.5 }'
                         if isinstance(err.get("input"), (int, float)) and not isinstance(err.get("input"), bool)
                         else ', or a table by group term: { "1|x" = "centered" }')
            elif loc[:2] == ("model", "parameterization") and not hint.startswith("did you mean"):
                hint += ", or a centring weight: a number strictly between 0 and 1, without quotes (0.5)"
        elif kind in ("int_parsing", "int_type", "float_parsing", "float_type", "string_type", "bool_type",
                      "dict_type", "list_type", "tuple_type", "int_from_float", "bool_parsing",
                      "greater_than", "less_than", "greater_than_equal", "less_than_equal", "too_short"):
            got = repr(err.get("input"))
            if loc and loc[-1] in ("ci_prob", "target_accept"):
                hint = "a probability strictly between 0 and 1, e.g. 0.95"
            elif loc[:2] == ("model", "parameterization") and kind.startswith(("greater", "less")):
                hint = ('a centring weight is strictly between 0 and 1; for the ends write "noncentered" (0) '
                        'or "centered" (1)')
            msg = _in_words(kind, msg, err.get("ctx") or {})
        problems.append(Problem(msg, key=key, file=where_file, line=line, got=got, hint=hint))
    return problems


def _origin(origins: Origins, loc: tuple, file: str) -> tuple[str, int | None]:
    path = tuple(loc)
    while path:
        if path in origins:
            return origins[path]
        path = path[:-1]
    return file, None
