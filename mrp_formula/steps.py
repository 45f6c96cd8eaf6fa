"""Each step of the job, written once: every command is a short script over these.

``plan`` (spec -> checked spec, prepared tables, fit plan), ``posterior`` (from the fit cache or the
sampler), ``estimate`` (predict every population cell per draw, poststratify, assemble and
summarise the estimands). ``mrp run``, ``check``, ``prior``, ``recover`` and ``compare`` call them;
none repeats them. Bambi and PyMC are imported only when a model is built or sampled.
"""

from __future__ import annotations

import difflib
import functools
import logging
import time
import importlib.util
import re
from dataclasses import dataclass, replace
from typing import Sequence
from pathlib import Path

import pandas as pd

from mrp_formula.poststrat import estimands as est_mod
from mrp_formula.poststrat import classical as classical
from mrp_formula.errors import Problem, SpecError, did_you_mean
from mrp_formula.spec.formula import FormulaInfo, describe, mark, transformed_response
from mrp_formula.poststrat import sums
from mrp_formula.output.files import Origin, check_out
from mrp_formula.spec.families import FAMILIES
from mrp_formula.spec.tree import LoadedSpec, dotted, variant_overrides
from mrp_formula.data.tables import Tables, prepare
from mrp_formula.data.targets import Targets, check_calibrate_spec, load_targets
from mrp_formula.poststrat import calibrate as calibrate_mod
from mrp_formula.errors import MrpError
from mrp_formula.notes import Note
from mrp_formula.model.cache import FitCache, fit_key, model_key
from mrp_formula.model.reuse import MODELS_DIR, RecipeStore
from mrp_formula.checks.coverage import Coverage
from mrp_formula.model.plan import Fit, FitPlan, plan_fit, versions
from mrp_formula.predict.cells import predictor as make_predictor
from mrp_formula.progress import SILENT, Reporter, sampling_phase
from mrp_formula.spec.priors import (POSITIVE, POSITIVE_DISTRIBUTIONS, UNIT, PriorSpec, support, values_text,
                                     with_support_within)
from mrp_formula.spec.tree import load_spec

log = logging.getLogger("mrp_formula")


@dataclass(frozen=True)
class Plan:
    """A checked spec with its prepared tables: everything short of sampling."""

    loaded: LoadedSpec
    info: FormulaInfo
    tables: Tables
    fit_plan: FitPlan
    coverage: Coverage | None = None  # filled in by ``check``
    targets: Targets | None = None  # the known means of [calibrate]
    inputs: dict | None = None  # path and SHA-256 of every input file, as read (``read_inputs``)

    @property
    def notes(self) -> tuple[str, ...]:
        fp = self.fit_plan
        extra = []
        if fp.aggregated:
            extra.append(f"fitting {fp.cells} binomial cells instead of {fp.rows_in} rows (same likelihood)")
        for term, choice in fp.parameterization.items():
            extra.append(f"group term {term}: {choice} ({fp.parameterization_reason[term]})")
        if fp.mass_matrix_reason and self.loaded.spec.fit.sampler == "nutpie":
            extra.append(f"mass matrix: {fp.mass_matrix.replace('_', '-')} ({fp.mass_matrix_reason})")
        extra += fp.structure_notes
        extra += semantic_notes(self.loaded.spec, self.info, self.tables.population_vars)
        defaults = [p.key for p in fp.priors if p.source == "default"]
        if defaults:
            extra.append(f"priors not in model.priors take defaults ({', '.join(defaults)}): {fp.prior_scale}; "
                         f"`mrp check` lists every prior, manifest.json records them")
        if self.targets is not None:
            extra += list(self.targets.notes)
        return self.tables.notes + tuple(extra)


def semantic_notes(spec, info: FormulaInfo, population_vars) -> list[str]:
    """What the model and the estimands mean where a user may assume otherwise (docs/outputs.md)."""
    notes = []
    slopes = [g for g in info.group_terms if g.expr_vars]
    if slopes:
        terms = ", ".join(f"{g.name}" + (f" with 1|{g.factor}" if any(
            h.name == f"1|{g.factor}" for h in info.group_terms) else "") for g in slopes)
        notes.append(f"group effects are independent: {terms}: each level's intercept and slopes are separate "
                     f"normal effects with their own standard deviation, and no correlation between them is "
                     f"estimated (lme4's (1 + x | g) estimates one)")
    pop = set(population_vars)
    for name, est in spec.estimands.items():
        for var in est.contrast or {}:
            if var in pop:
                a, b = est.contrast[var]
                notes.append(f"estimand {name}: the population table has '{var}', so the contrast compares two "
                             f"subpopulations (its cells with {var} = {a} against those with {var} = {b}, each "
                             f"with its own mix of the other variables), not the whole population under each "
                             f"level; for that counterfactual, leave '{var}' out of the population table")
        for var in est.at:
            if var in pop:
                notes.append(f"estimand {name}: at sets '{var}' to the listed level(s) in every population cell, "
                             f"a counterfactual: the population's own shares of '{var}' are not used")
    return notes


# Priors of a family's own parameters (the names Bambi gives them), besides the terms of the formula.
AUXILIARY = {name: f.auxiliary for name, f in FAMILIES.items() if f.auxiliary}


def spec_checks(loaded: LoadedSpec, *, data: bool = True) -> FormulaInfo:
    """Checks that need the formula but not the data: all problems at once. When the spec has
    problems, the data's are reported with them (``data``; see :func:`_with_data_problems`)."""

    spec = loaded.spec
    file = str(loaded.path)
    info = describe(spec.model.formula, file=file, line=loaded.line("model", "formula"))
    problems: list[Problem] = []
    family = spec.model.family
    transformed = transformed_response(info.text)
    if transformed:
        problems.append(_transformed_response_problem(info, family, transformed, file,
                                                      loaded.line("model", "formula")))
    elif FAMILIES[family].response == "proportion" and not info.is_proportion:
        problems.append(Problem(f"the {family} family needs the response written p(successes, trials)",
                                key="model.formula", file=file, line=loaded.line("model", "formula"),
                                got=repr(info.response), hint=f'e.g. "p(clicks, visits) ~ {info.rhs}"'))
    if info.is_proportion and FAMILIES[family].response != "proportion":
        problems.append(Problem(f"p(successes, trials) is the binomial family's response, not {family}'s",
                                key="model.family", file=file, line=loaded.line("model", "family"),
                                hint='set family = "binomial"'))
    for name, est in spec.estimands.items():
        if est.scale == "odds_ratio" and not FAMILIES[family].binary:
            problems.append(Problem(f"odds_ratio needs a probability; the {family} family has none",
                                    key=f"estimands.{name}.scale", file=file,
                                    line=loaded.line("estimands", name, "scale"),
                                    hint='use scale = "difference" or "ratio"'))
    needs = {"numpyro": "numpyro", "blackjax": "blackjax", "nutpie": "nutpie"}.get(spec.fit.sampler)
    if needs and importlib.util.find_spec(needs) is None:
        problems.append(Problem(f"the {spec.fit.sampler} sampler needs the '{needs}' package, which is not installed",
                                key="fit.sampler", file=file, line=loaded.line("fit", "sampler"),
                                hint=f"pip install {needs} (jax-based samplers: pip install 'bambi[jax]'), "
                                     f"or use sampler = \"nutpie\" or \"pymc\""))
    problems += check_calibrate_spec(loaded)
    auxiliary = AUXILIARY.get(family, ())
    valid = set(info.prior_names) | set(auxiliary)
    if FAMILIES[family].categories == "ordinal":
        valid.discard("Intercept")  # the thresholds take the intercept's place
    groups = {g.name for g in info.group_terms}
    components, component_problems = formula_components(loaded, info)
    problems += component_problems
    for name, cinfo in components.items():
        valid |= {f"{name}.{t}" for t in cinfo.prior_names}
        groups |= {f"{name}.{g.name}" for g in cinfo.group_terms}
    unknown = []  # prior keys that are not terms of the model
    probe = functools.cache(lambda: _prepare_error(loaded, info))  # the data checks, run at most once
    for name, prior in spec.model.priors.items():
        where = {"key": dotted(("model", "priors", name)), "file": file,
                 "line": loaded.line("model", "priors", name)}
        if name in components:
            problems.append(Problem(f"{name} has a formula (model.formulas.{name}): its terms take the priors, "
                                    f"not {name} itself", hint=f"give priors as \"{name}.Intercept\", \"{name}.<term>\"",
                                    **where))
        elif name in {a for names in AUXILIARY.values() for a in names} - valid:
            own = ", ".join(f"'{a}'" for a in auxiliary)
            problems.append(Problem(f"'{name}' is not a parameter of the {family} family",
                                    hint=f"its parameter is {own}" if own else "remove it: the family has none",
                                    **where))
        elif name not in valid:
            unknown.append((name, where))
        elif name in groups:
            sd, mu = prior.param("sigma"), prior.param("mu")
            if prior.dist != "Normal" or sd is None:
                problems.append(Problem("a group term's prior is Normal(0, <scale prior>)", got=str(prior),
                                        hint='e.g. "Normal(0, HalfNormal(1))"', **where))
            elif "." in name and not isinstance(sd, PriorSpec):
                problems.append(Problem("a group term of an auxiliary parameter's formula needs a prior on its sd",
                                        got=str(prior), hint='e.g. "Normal(0, HalfNormal(1))"', **where))
            elif mu is not None and (isinstance(mu, PriorSpec) or float(mu) != 0):
                problems.append(Problem("a group term's effects have mean 0 (the intercept and common terms carry "
                                        "the mean)", got=str(prior), hint='e.g. "Normal(0, HalfNormal(1))"',
                                        **where))
        elif prior.nested:
            what = f"the {family} family's {name}" if name in auxiliary else f"'{name}' is a common term"
            problems.append(Problem(f"a prior inside a prior (a hyperprior) is for group terms only; {what}",
                                    got=str(prior), hint="give its parameters as numbers, e.g. \"Normal(0, 1)\"",
                                    **where))
        elif name in ("sigma", "alpha", "nu", "kappa") and not POSITIVE.covers(support(prior)):
            problems.append(Problem(f"the {family} family's {name} is positive, and a {prior.dist} prior takes "
                                    f"{values_text(support(prior))}", got=str(prior),
                                    hint=f"use a prior on positive values: {', '.join(POSITIVE_DISTRIBUTIONS)}",
                                    **where))
        elif name == "psi" and not UNIT.covers(support(prior)):
            problems.append(Problem(f"the {family} family's psi is a probability, and a {prior.dist} prior takes "
                                    f"{values_text(support(prior))}", got=str(prior),
                                    hint="use a prior on (0, 1): " + ", ".join(with_support_within(UNIT)), **where))
    if unknown:
        problems += _unknown_prior_keys(loaded, info, unknown, valid, probe)
    problems += structure_problems(loaded, info)
    problems += parameterization_problems(loaded, info)
    if problems or (probe.cache_info().currsize and probe() is not None):
        raise _with_data_problems(problems, probe, data)
    return info


# Spec keys the data checks read as they are: while one of them is wrong, the data's problems would
# be found against the wrong formula or family, so they wait for the fix.
DATA_CHECKS_READ = ("model.formula", "model.family", "model.formulas")


def _with_data_problems(spec_problems: list[Problem], probe, data: bool) -> MrpError:
    """The error of a spec with problems, with the problems the data checks (``probe``) find, so
    that a user sees both at once rather than the data's only after fixing the spec. The data are
    checked when ``data`` is set and neither the formula nor the family is wrong
    (:data:`DATA_CHECKS_READ`), or when a prior key's problem needed them already. A formula naming
    a column the data lack is the data's error (exit 4, as without the spec's problems); otherwise
    it is the spec's."""
    probed = probe.cache_info().currsize > 0
    broken = any(p.key == k or p.key.startswith(k + ".") for p in spec_problems for k in DATA_CHECKS_READ)
    exc = probe() if probed or (data and not broken) else None
    if exc is None:
        return SpecError(spec_problems)
    missing = any(p.key == "model.formula" and "is not a column" in p.message for p in exc.problems)
    cls = type(exc) if missing else SpecError
    return cls(spec_problems + [p for p in exc.problems if p not in spec_problems])


def _prepare_error(loaded: LoadedSpec, info: FormulaInfo) -> MrpError | None:
    """The error the data checks raise for this spec, if any (a probe: a failure that is no
    user's mistake counts as none, the spec's own problems being what is raised)."""
    try:
        prepare(loaded, info)
    except MrpError as exc:
        return exc
    except Exception:  # noqa: BLE001 - only a probe
        return None
    return None


def formula_components(loaded: LoadedSpec, info: FormulaInfo) -> tuple[dict[str, FormulaInfo], list[Problem]]:
    """``model.formulas``: the description of each auxiliary parameter's formula, and what is wrong
    with them (a parameter the family lacks or that cannot have a formula, a formula that does
    not parse, a variable that is not a predictor of the model's formula)."""
    file = str(loaded.path)
    family = loaded.spec.model.family
    out, problems = {}, []
    for name, text in loaded.spec.model.formulas.items():
        where = {"key": dotted(("model", "formulas", name)), "file": file,
                 "line": loaded.line("model", "formulas", name)}
        if name not in FORMULA_PARAMETERS or name not in AUXILIARY.get(family, ()):
            with_psi = ", ".join(f for f, aux in AUXILIARY.items() if "psi" in aux)
            problems.append(Problem(f"'{name}' cannot have a formula in the {family} family: only psi, the "
                                    f"probability of a non-zero outcome of a hurdle or zero-inflated family, can",
                                    hint=f"remove it, or use a family with psi: {with_psi}", **where))
            continue
        rhs = text.strip().removeprefix("~").strip()
        try:
            cinfo = describe(f"{name} ~ {rhs}", **where)
        except SpecError as exc:
            problems += list(exc.problems)
            continue
        foreign = [v for v in cinfo.rhs_vars if v not in info.rhs_vars]
        if foreign:
            problems.append(Problem(f"the formula of {name} uses {', '.join(repr(v) for v in foreign)}, which "
                                    f"the model's formula does not", got=text,
                                    hint="add them to model.formula too (the data and population are checked "
                                         "for the variables of model.formula)", **where))
            continue
        out[name] = cinfo
    return out, problems


FORMULA_PARAMETERS = ("psi",)  # the auxiliary parameters a formula can model (logit link)


def structure_problems(loaded: LoadedSpec, info: FormulaInfo) -> list[Problem]:
    """``model.structure.VAR`` names the grouping variable of a ``(1|VAR)`` term of the formula."""
    file = str(loaded.path)
    out = []
    intercepts = {g.factor for g in info.group_terms if not g.expr_vars and len(g.factor_vars) == 1}
    family = loaded.spec.model.family
    for var, st in loaded.spec.model.structure.items():
        where = {"key": dotted(("model", "structure", var)), "file": file,
                 "line": loaded.line("model", "structure", var)}
        if st.kind != "iid" and family == "categorical":
            out.append(Problem(f"a {st.kind} structure is not available for the categorical family (its group "
                               f"effects are one vector per category)", hint=f"use {var} = \"iid\", or the "
                               f"cumulative family for ordered categories", **where))
            continue
        if var in intercepts or st.kind == "iid":
            if var not in intercepts and var not in {g.factor for g in info.group_terms}:
                out.append(Problem(f"'{var}' is not the grouping variable of a group term of the formula",
                                   hint=did_you_mean(var, sorted(intercepts)) or f"add (1 | {var}) to the formula",
                                   **where))
            continue
        slopes = [g.name for g in info.group_terms if g.expr_vars and var in g.factor_vars]
        inter = [g.name for g in info.group_terms if len(g.factor_vars) > 1 and var in g.factor_vars]
        if slopes or inter:
            what = ", ".join(slopes + inter)
            out.append(Problem(f"a {st.kind} structure is for a group intercept (1|{var}); the formula has '{var}' "
                               f"only in {what}", **where,
                               hint=f"add (1 | {var}) to the formula for the structured intercept (group slopes "
                                    f"and interactions such as {what} keep independent effects), or set "
                                    f"{var} = \"iid\""))
        else:
            close = did_you_mean(var, sorted(intercepts))
            out.append(Problem(f"'{var}' is not the grouping variable of a (1|{var}) term of the formula",
                               hint=close if close.startswith("did you mean") else f"add (1 | {var}) to the formula",
                               **where))
    return out


def parameterization_problems(loaded: LoadedSpec, info: FormulaInfo) -> list[Problem]:
    """A table ``model.parameterization`` is keyed by group terms of the formula, as written in
    ``model.priors`` (``"1|race:female"``)."""
    setting = loaded.spec.model.parameterization
    if isinstance(setting, str):
        return []
    terms = [g.name for g in info.group_terms]
    structured = {f"1|{var}": st.kind for var, st in loaded.spec.model.structure.items() if st.kind != "iid"}
    out = []
    for name in setting:
        where = {"key": dotted(("model", "parameterization", name)), "file": str(loaded.path),
                 "line": loaded.line("model", "parameterization", name)}
        if name in structured:
            var = name.removeprefix("1|")
            out.append(Problem(f"'{name}' has a {structured[name]} structure (model.structure.{var}), whose effects "
                               f"are always non-centred", hint=f"remove it here, or set model.structure.{var} = "
                               f"\"iid\" for independent effects", **where))
            continue
        if name in terms:
            if not isinstance(setting[name], str):
                out += _centring_weight_problems(loaded, info, name, where)
            continue
        component = name.split(".", 1)[0]
        if component in loaded.spec.model.formulas:
            out.append(Problem(f"'{name}' is a term of the formula of {component}, whose group effects "
                               f"are always non-centred", hint="remove it: only the group terms of model.formula "
                               "can be set", **where))
            continue
        same = [t for t in terms if t.replace(" ", "") == name.replace(" ", "")]
        hint = (f"write it as the term is named: \"{same[0]}\"" if same
                else did_you_mean(name, terms) or f"its group terms are {', '.join(terms) or 'none'}")
        out.append(Problem(f"'{name}' is not a group term of the formula", hint=hint, **where))
    return out


def _centring_weight_problems(loaded: LoadedSpec, info: FormulaInfo, name: str, where: dict) -> list[Problem]:
    """A centring weight set by hand is for the partially non-centred form, which mrp-formula builds
    for a group intercept of a one-response family whose prior is Normal(0, sd) with a prior on the
    sd (``model.plan.partial_centring``)."""
    term = next(g for g in info.group_terms if g.name == name)
    family = loaded.spec.model.family
    prior = loaded.spec.model.priors.get(name)
    choose = 'set "centered" or "noncentered" instead'
    where = where | {"got": f"{loaded.spec.model.parameterization[name]:g}"}
    if term.expr_vars:
        return [Problem(f"a centring weight is for a group intercept (1|...); '{name}' has slopes",
                        hint=choose, **where)]
    if FAMILIES[family].categories == "categorical":
        return [Problem(f"a centring weight is not built for the {family} family's group effects (one per category)",
                        hint=choose, **where)]
    if prior is not None and prior.dist == "Normal" and not isinstance(prior.param("sigma"), PriorSpec):
        return [Problem(f"a centring weight needs a prior on the sd of '{name}', whose prior fixes it "
                        f"(model.priors.\"{name}\" = {prior})", hint='e.g. "Normal(0, HalfNormal(1))", or remove '
                        "the weight: a fixed sd leaves nothing to reparameterize", **where)]
    return []


DATA_FREE = ("fit", "report", "name", "description")  # a variant setting only these reads the spec's data


def variant_error(loaded: LoadedSpec, overrides=(), frames: dict | None = None,
                  known: Sequence[Problem] = ()) -> MrpError | None:
    """Each variant checked as its own spec (its terms, priors, structure, parameterization, its
    data, population and adjacency files and their columns and levels), reported at the variant's
    table: what ``mrp batch`` would refuse, ``mrp check`` of the spec says. A problem of the spec
    itself (``known``: the spec's own error), which every variant inherits, is not repeated for
    each; a problem inside a data file keeps its file and line. The error is a spec error (exit 3)
    when one variant's is, else a data error (exit 4); None when every variant is sound."""
    seen = {(p.key, p.message, p.got) for p in known}
    spec_file = str(loaded.path)
    out, classes = [], set()
    for name in loaded.spec.variants:
        try:
            variant = load_spec(loaded.path, tuple(overrides) + variant_overrides(loaded, name), frames=frames)
            if all(k.split(".")[0] in DATA_FREE for k in loaded.spec.variants[name]):
                info = spec_checks(variant, data=False)  # the sampler's or the page's settings: the data as the spec's
            else:
                info = plan(loaded.path, loaded=variant).info
            if found := estimand_term_problems(variant, info):
                raise SpecError(found)
        except MrpError as exc:
            for p in exc.problems:
                if (p.key, p.message, p.got) in seen:
                    continue
                classes.add(type(exc))
                own = next((k for k in loaded.spec.variants[name] if p.key == k or p.key.startswith(k + ".")), None)
                line = loaded.line("variants", name, own) if own else None
                in_spec = p.file in (None, spec_file, "--set")
                out.append(replace(p, key=f"variants.{name} ({p.key})" if p.key else f"variants.{name}",
                                   file=spec_file if in_spec else p.file,
                                   line=(line or loaded.line("variants", name)) if in_spec else p.line))
    if not out:
        return None
    return (SpecError if SpecError in classes or len(classes) > 1 else classes.pop())(out)


def estimand_term_problems(loaded: LoadedSpec, info: FormulaInfo) -> list[Problem]:
    """The estimands' `at` and `contrast` variables and `exclude` terms against the formula alone
    (what the data checks also find, with the sample's levels): for a variant, whose formula may
    drop what the spec's estimands name."""
    out = []
    predictors, terms = set(info.rhs_vars), set(info.prior_names)
    for name, est in loaded.spec.estimands.items():
        for where, table in (("at", est.at), ("contrast", est.contrast or {})):
            for var in table:
                if var not in predictors:
                    out.append(Problem(f"'{var}' is not a predictor in the formula", key=f"estimands.{name}.{where}.{var}",
                                       file=str(loaded.path), line=loaded.line("estimands", name, where),
                                       hint=did_you_mean(var, predictors)))
        for term in est.exclude:
            if term not in terms:
                out.append(Problem(f"'{term}' is not a term of the model", key=f"estimands.{name}.exclude",
                                   file=str(loaded.path), line=loaded.line("estimands", name, "exclude"),
                                   hint=did_you_mean(term, terms)))
    return out


def _transformed_response_problem(info: FormulaInfo, family: str, span: tuple[int, int], file: str,
                                  line: int | None) -> Problem:
    """A response written as a transform: its estimands would be on the transform's scale while
    raw, weighted and the plots are on the column's, so it is refused with the family that fits."""
    expr = info.text[span[0]:span[1]]
    names = [] if info.is_proportion else [v for v in info.response_vars if v.isidentifier()]
    var = names[0] if len(names) == 1 else None
    plain = f'"{var} ~ {info.rhs}"' if var else f'"<column> ~ {info.rhs}"'
    if FAMILIES[family].binary:
        hint = ("make the 0/1 (or successes and trials) columns in the data, e.g. data.query = "
                "\"SELECT *, CAST(revenue > 0 AS INTEGER) AS converted FROM source\", and write "
                f'"converted ~ {info.rhs}"' if family == "bernoulli" else
                f'write p(successes, trials) over two columns, e.g. "p(clicks, visits) ~ {info.rhs}"; '
                "derive columns in data.query")
    elif family in ("poisson", "negativebinomial"):
        hint = (f"model the count itself: {plain}; the {family} family's log link already models "
                "the logarithm of its mean")
    elif FAMILIES[family].has_categories:
        hint = (f"write the column itself: {plain}; the {family} family treats its values as categories "
                f"(their order: model.levels.{var or '<column>'})")
    else:
        hint = (f"model the outcome on its own scale: {plain} with family = \"gaussian\" (the estimands are then "
                "means in its units); for a positive, skewed amount family = \"lognormal\" or \"gamma\" "
                "(with zeros: \"hurdle_lognormal\" or \"hurdle_gamma\"), whose estimands are means in its units too; "
                "for whole-number counts "
                "family = \"poisson\" or \"negativebinomial\", whose log link already models the log of the mean")
    of = f", not of {var}, while raw, weighted and the plots are in {var}" if var else \
        ", while raw, weighted and the plots are on the scale of the data"
    return Problem(f"a transformed response is not supported: the estimands would be population means of {expr}{of}",
                   key="model.formula", file=file, line=line, got=repr(expr), hint=hint,
                   snippet=mark(info.text, *span))


_DID_YOU_MEAN = re.compile(r"did you mean '(.+)'\?")


def _unknown_prior_keys(loaded: LoadedSpec, info: FormulaInfo, unknown, valid: set[str], probe) -> list[Problem]:
    """Problems of prior keys that are not terms of the model.

    A key close to a term may be right while the formula holds the typo (a group term on a
    misspelt column, with the prior written for the column's name): then the data are read to
    tell (``probe``). When they lack a column of the formula, a key that is what the formula would
    have once the column is fixed is not reported, and a term naming a missing column is never
    suggested; the data's problems are raised with the spec's (:func:`spec_checks`).
    """

    term_vars = dict(info.common_term_vars)
    term_vars.update({g.name: g.expr_vars + g.factor_vars for g in info.group_terms})
    data_exc, fixes = None, {}  # fixes: a formula variable that is not a column -> the column it may mean
    if any(difflib.get_close_matches(name, valid, n=1, cutoff=0.6) for name, _ in unknown):
        data_exc = probe()
        for p in data_exc.problems if data_exc is not None else ():
            for var in info.response_vars + info.rhs_vars:
                if p.key == "model.formula" and f"'{var}' is not a column" in p.message:
                    m = _DID_YOU_MEAN.search(p.hint)
                    fixes[var] = m.group(1) if m else None
    broken = {t for t, vs in term_vars.items() if set(vs) & set(fixes)}
    out = []
    for name, where in unknown:
        if any(_fixed_term(t, fixes) == name.replace(" ", "") for t in broken):
            continue  # the key names the term the formula means; the formula's problem says so
        out.append(Problem(f"'{name}' is not a term of the model", hint=did_you_mean(name, valid - broken),
                           **where))
    return out


def _fixed_term(term: str, fixes: dict[str, str | None]) -> str:
    """A term's name with each misspelt column replaced by the column it may mean."""
    parts = re.split(r"(\W)", term)
    return "".join(fixes.get(p) or p for p in parts)


def default_out(loaded: LoadedSpec) -> Path:
    if loaded.spec.report.out:
        return Path(loaded.spec.report.out)
    return Path.cwd() / "runs" / loaded.spec.name


def out_origin(loaded: LoadedSpec, out) -> Origin:
    """Who chose the output folder, for the message (and exit code) that refuses it."""
    if out:
        return Origin("--out")
    if loaded.spec.report.out:
        return Origin("report.out", file=str(loaded.path), line=loaded.line("report", "out"))
    return Origin("")


def out_notes(loaded: LoadedSpec) -> tuple[Note, ...]:
    """What `mrp check` says of the run folder: that `mrp run` would refuse it, before the run."""

    try:
        check_out(default_out(loaded), origin=out_origin(loaded, None))
    except MrpError as exc:
        p = exc.problems[0]
        where = "report.out" if p.key == "report.out" else f"the default run folder {p.file}"
        return (Note("run.out_refused", f"{where}: {p.message}; `mrp run` will refuse it unless you pass --out DIR "
                                        f"or --into-existing", "warning"),)
    return ()


@dataclass(frozen=True)
class Fitted:
    """A posterior and where it came from."""

    fit: Fit
    key: str  # the fit-cache key
    reused: bool  # True when it came from the cache
    note: str  # the cache's message ("" when nothing worth saying)
    store_in: Path | None = None  # the fit cache it is still to be stored in (``posterior(store=False)``)


def store_fit(fitted: Fitted) -> str:
    """Store a fit that ``posterior(..., store=False)`` left for later in its fit cache; '' when
    stored (or nothing to store), else a note why not (the fit stands: the cache is speed)."""
    if fitted.store_in is None:
        return ""
    return FitCache(fitted.store_in).store(fitted.key, fitted.fit.posterior, fitted.fit.seconds)


@dataclass(frozen=True)
class Estimate:
    """The estimands of one posterior (or prior): per-draw values and their summary."""

    predictor: object  # predict.cells.CellPredictor
    pieces: list  # the estimand plan (estimands.plan)
    draws: object  # estimands.EstimandDraws: one row per estimand and group, one column per draw
    table: pd.DataFrame  # the summary, one row per estimand and group
    group_columns: list[str]
    calibration: calibrate_mod.Calibration | None = None  # the shifts, when the spec calibrates


def plan(path, overrides=(), *, loaded: LoadedSpec | None = None) -> Plan:
    """The checked spec with its prepared tables and fit plan: everything short of sampling."""

    loaded = loaded or load_spec(path, tuple(overrides))
    try:
        info = spec_checks(loaded)
        (tables, targets, fit_plan), inputs = read_inputs(loaded, lambda: _read_and_planned(loaded, info))
        return Plan(loaded=loaded, info=info, tables=tables, fit_plan=fit_plan, targets=targets, inputs=inputs)
    except MrpError as exc:
        raise placed(exc, loaded) from None


def _read_and_planned(loaded: LoadedSpec, info: FormulaInfo) -> tuple[Tables, Targets | None, FitPlan]:
    """Everything that reads an input file (the tables, the known means, the adjacency tables)."""
    tables = prepare(loaded, info)
    return tables, load_targets(loaded, tables), plan_fit(loaded, info, tables)


def read_inputs(loaded: LoadedSpec, read):
    """``read()`` and the input files' hashes, taken before and checked after: a file saved while it
    was read (an editor's save during `mrp watch`) would give numbers of one content and a manifest
    of another, so it is refused, naming the file."""
    from mrp_formula.output.manifest import input_files

    before = input_files(loaded)
    out = read()
    after = input_files(loaded)
    changed = [k for k in dict.fromkeys(list(before) + list(after)) if before.get(k) != after.get(k)]
    if changed:
        from mrp_formula.errors import DataError

        raise DataError([Problem(f"{(after.get(k) or before.get(k) or {}).get('path', k)} changed while it was "
                                 f"being read", key=_input_key(k), file=str(loaded.path),
                                 hint="run again once the file is saved (`mrp watch` reruns by itself)")
                         for k in changed])
    return out, before


def _input_key(name: str) -> str:
    """The spec key of an input of ``input_files``: data -> data.source, join[0] -> join[0].source,
    adjacency.state -> model.structure.state.adjacency."""
    if name.startswith("adjacency."):
        return f"model.structure.{name.removeprefix('adjacency.')}.adjacency"
    return f"{name}.source"


def placed(exc: MrpError, loaded: LoadedSpec) -> MrpError:
    """``exc`` with each problem of a key given with --set placed there rather than in the file
    (where the key has no line, or the line of the value --set replaced), and of a key an extended
    spec wrote placed in that file (the key is not in this one)."""
    moved = [_placed(p, loaded) for p in exc.problems]
    return exc if moved == list(exc.problems) else type(exc)(moved)


def _placed(p: Problem, loaded: LoadedSpec) -> Problem:
    if not p.key or p.file != str(loaded.path):
        return p
    if loaded.set_by_override(p.key):
        return replace(p, file="--set", line=None)
    where = loaded.written_in(p.key)
    if where is None:
        return p
    inherited = (f"{loaded.path.name} extends this file, and tables merge key by key: it can replace this key but "
                 f"not remove it (a variant or --set can replace model.priors as a whole)"
                 if p.key.startswith("model.priors.") else "")
    hint = "; ".join(h for h in (p.hint if not inherited or "did you mean" not in p.hint else "", inherited) if h)
    return replace(p, file=where[0], line=where[1], hint=hint)


def build(plan: Plan):
    """The Bambi model of a plan (imports Bambi and PyMC)."""
    from mrp_formula.model import sampler

    return sampler.build_model(plan.loaded, plan.info, plan.fit_plan)


def posterior(plan: Plan, cache_roots: Sequence[Path], *, model=None, refit: bool = False, cache: bool = True,
              progress: bool = False, reporter: Reporter = SILENT, store: bool = True) -> Fitted:
    """The posterior of ``plan``: from the first cache in ``cache_roots`` that holds a matching fit,
    else sampled and stored in ``cache_roots[0]``. ``refit`` samples anyway; ``cache=False``
    neither reads nor writes the cache; ``store=False`` leaves a new fit for the caller to store
    (:func:`store_fit`: ``mrp run`` writes it while the page is drawn). The Bambi ``model`` is built here when it is None and a fit
    is needed, so a cached run never imports Bambi or PyMC. ``reporter`` hears the phases
    (compiling, sampling) and the chains' progress."""

    key = fit_key(plan, versions())
    caches = [FitCache(Path(r)) for r in dict.fromkeys(Path(r) for r in cache_roots)]
    why = ""  # why a cached entry was not used, when there was one
    if cache and not refit:
        for fc in caches:
            tree, note = fc.load(key)
            if tree is not None:
                fit = Fit(posterior=tree, seconds=0.0, sampler=plan.loaded.spec.fit.sampler)
                return Fitted(fit=fit, key=key, reused=True, note=note)
            if note != "no cached fit" and not why:
                why = note
    f = plan.loaded.spec.fit
    recipes = RecipeStore(caches[0].root / MODELS_DIR) if cache and caches and f.sampler == "nutpie" else None
    mkey = model_key(plan, versions()) if recipes is not None else ""
    fit = None
    if recipes is not None and model is None and not (progress and reporter is SILENT):
        fit = _reused_fit(plan, recipes.load(mkey), reporter)
    if fit is None:
        from mrp_formula.model import sampler

        reporter.phase("compiling model")
        model = model if model is not None else build(plan)
        reporter.phase(sampling_phase(f.chains, f.draws))
        keep = functools.partial(recipes.keep, mkey) if recipes is not None else None
        fit = sampler.fit(model, plan.loaded, mass_matrix=plan.fit_plan.mass_matrix, progress=progress,
                          on_progress=reporter.chains if reporter is not SILENT else None, keep=keep)
    _check_complete(fit.posterior, f)
    fitted = Fitted(fit=fit, key=key, reused=False, note=why, store_in=caches[0].root if cache and caches else None)
    if store:
        unstored = store_fit(fitted)
        fitted = replace(fitted, store_in=None, note="; ".join(n for n in (why, unstored) if n))
    return fitted


def _check_complete(tree, f) -> None:
    """A sampler that returns fewer draws than the spec asks for was interrupted (a library may
    catch the interrupt and return the draws so far): raise it, so that nothing is summarised or
    cached from a partial fit."""
    post = tree["posterior"] if "posterior" in tree.children else None
    if post is None:
        return
    sizes = post.dataset.sizes
    if sizes.get("chain", f.chains) < f.chains or sizes.get("draw", f.draws) < f.draws:
        raise KeyboardInterrupt(f"the sampler returned {sizes.get('chain')} chains x {sizes.get('draw')} draws "
                                f"of the {f.chains} x {f.draws} asked for")


def _reused_fit(plan: Plan, recipe, reporter: Reporter) -> Fit | None:
    """A fit of the model a recipe describes (:mod:`mrp_formula.model.reuse`: no Bambi, no PyMC),
    or None when there is no recipe or it cannot sample here (the fit then goes through Bambi)."""
    if recipe is None:
        return None
    from mrp_formula.model import reuse

    f = plan.loaded.spec.fit
    start = time.perf_counter()
    reporter.phase(sampling_phase(f.chains, f.draws))
    try:
        dt = reuse.fit(recipe, f, mass_matrix=plan.fit_plan.mass_matrix,
                       on_progress=reporter.chains if reporter is not SILENT else None)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - Unusable, or anything else: the fit through Bambi decides
        log.info("the stored model was not reused (%s: %s); building it", type(exc).__name__, exc)
        return None
    return Fit(posterior=dt, seconds=time.perf_counter() - start, sampler=f.sampler)


def estimate(plan: Plan, draws_tree, *, block: int | None = None, poststratify_fn=None,
             tables=None, calibrate: bool = True) -> Estimate:
    """Predict every population cell per draw of ``draws_tree`` (a posterior or prior DataTree),
    poststratify, and assemble and summarise every estimand of the spec. ``tables`` replaces the
    plan's prepared tables (a simulated sample in ``mrp recover``). With ``[calibrate]`` (and
    ``calibrate``), every draw's predictions are first shifted to the known means
    (``poststrat.calibrate``) and every estimand comes from the shifted predictions;
    ``Estimate.predictor`` stays the fitted model's own (the checks compare it with the sample)."""

    spec = plan.loaded.spec
    tables = tables if tables is not None else plan.tables
    predictor = make_predictor(plan.fit_plan, spec.model.link, draws_tree, tables, plan.info, seed=spec.fit.seed)
    pieces = est_mod.plan(spec.estimands, tables.population_vars)
    kwargs = {"block": block} if block else {}
    poststratify = poststratify_fn or sums.poststratify  # looked up per call: recover's test swaps it
    calibration, used = None, predictor
    if calibrate and plan.targets is not None:
        calibration = calibrate_mod.calibrate(predictor, tables.population, plan.targets, block=block)
        used = predictor.with_offset(calibration.by, calibration.levels, calibration.shift)
    reduced = poststratify(tables.population, used, est_mod.requests(pieces), n_samples=predictor.n_samples,
                           **kwargs)
    group_cols = est_mod.group_columns(spec.estimands)
    ed = est_mod.assemble(pieces, reduced, n_chains=predictor.n_chains, n_draws=predictor.n_draws,
                          group_columns=group_cols, categories=predictor.categories)
    table = est_mod.summarise(ed, spec.estimands, ci_prob=spec.report.ci_prob, ci_kind=spec.report.ci_kind)
    table = est_mod.with_loss_unit(table, est_mod.outcome_unit(spec.model.family, plan.info.response_vars))
    return Estimate(predictor=predictor, pieces=pieces, draws=ed, table=table, group_columns=group_cols,
                    calibration=calibration)


def plan_and_model(path, overrides=()):
    """The plan of a spec and its Bambi model (for commands that sample it themselves)."""
    p = plan(path, overrides)
    return p, build(p)

