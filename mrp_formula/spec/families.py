"""The families as data: one frozen record per family, as Bambi keeps its families.

Every step that behaves differently by family asks the record (``FAMILIES[name].binary``,
``.categories``, ``.aggregatable``...) instead of comparing family names; a new family is one
record here: its link, its auxiliary parameters with their default priors, the support of its
outcome (the data check), its expected outcome and variance given the parent parameter (what
poststratification and the posterior predictive check use) and its simulator (``mrp recover``).

Bambi's names, links and parameters (``bambi/defaults/families.py``); PyMC's distributions. The
*parent* parameter ``m`` is the inverse link of the linear predictor (Bambi's ``mu``, ``p``):
for most families it is the expected outcome; for the lognormal it is the mean of log(y), and
for hurdle and zero-inflated families the mean of the non-zero (count) part. In PyMC's Hurdle*
and ZeroInflated* distributions ``psi`` is the probability of the non-zero part (hurdle:
P(y > 0); zero-inflated: the share drawn from the count distribution, which may itself be 0),
and the count part of a hurdle is truncated at zero (``Truncated(lower=1)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Mapping

import numpy as np

Aux = Mapping[str, "float | np.ndarray"]
Simulator = Callable[[np.ndarray, np.ndarray, Aux, np.random.Generator], np.ndarray]
"""(parent parameter per row, trials per row, auxiliary parameters by name, rng) -> one outcome per row."""
Moment = Callable[[np.ndarray, Aux], np.ndarray]
"""(parent parameter m, auxiliary parameters broadcastable to m) -> a moment of the outcome."""
PriorRule = Callable[[np.ndarray, np.ndarray], "tuple[str, tuple[tuple[str, float], ...], str]"]
"""(outcome values, their weights) -> (distribution, parameters, what they were scaled by)."""
Location = Callable[[np.ndarray, np.ndarray], "tuple[float, float, str]"]
"""(outcome values, weights) -> (intercept's prior mean, sd of the outcome on the linear
predictor's scale (1 on a log or logit scale), what they were computed from)."""

UNIT_EPS = 1e-9  # simulated beta outcomes are kept inside (0, 1), as the data check requires


# ----------------------------------------------------------------------------- small helpers


def _wmean(y, w) -> float:
    return float(np.sum(w * y) / np.sum(w))


def _wsd(y, w) -> float:
    return float(np.sqrt(np.sum(w * (y - _wmean(y, w)) ** 2) / np.sum(w)))


def _positive(y, w):
    keep = y > 0
    return y[keep], w[keep]


def _zero_truncated_poisson(m, rng):
    """Poisson(m) given > 0, by the inverse CDF on (P(0), 1)."""
    from scipy import stats

    m = np.maximum(np.asarray(m, dtype=float), 1e-12)
    u = rng.uniform(np.exp(-m), 1.0)
    return np.maximum(stats.poisson.ppf(u, m), 1).astype("int64")


def _nb_zero(m, alpha):
    """P(0) of a negative binomial with mean m and shape alpha."""
    return (alpha / (alpha + m)) ** alpha


def _zero_truncated_nb(m, alpha, rng):
    from scipy import stats

    m = np.maximum(np.asarray(m, dtype=float), 1e-12)
    u = rng.uniform(_nb_zero(m, alpha), 1.0)
    return np.maximum(stats.nbinom.ppf(u, alpha, alpha / (alpha + m)), 1).astype("int64")


def _nonzero(psi, n, rng):
    return rng.random(n) < psi


# ----------------------------------------------------------------------------- simulators


def _bernoulli(mu, trials, aux, rng):
    return (rng.random(len(mu)) < np.clip(mu, 0.0, 1.0)).astype("int64")


def _binomial(mu, trials, aux, rng):
    return rng.binomial(trials.astype("int64"), np.clip(mu, 0.0, 1.0)).astype("int64")


def _gaussian(mu, trials, aux, rng):
    return rng.normal(mu, aux["sigma"])


def _poisson(mu, trials, aux, rng):
    return rng.poisson(mu).astype("int64")


def _negativebinomial(mu, trials, aux, rng):
    # Bambi's (and PyMC's) NegativeBinomial(mu, alpha): variance mu + mu^2 / alpha
    a = aux["alpha"]
    return rng.negative_binomial(a, a / (a + np.asarray(mu))).astype("int64")


def _gamma(mu, trials, aux, rng):
    # Bambi's Gamma(mu, alpha): shape alpha, mean mu (PyMC's sigma = mu / sqrt(alpha))
    return rng.gamma(aux["alpha"], np.asarray(mu) / aux["alpha"])


def _lognormal(mu, trials, aux, rng):
    return np.exp(rng.normal(mu, aux["sigma"]))


def _t(mu, trials, aux, rng):
    return np.asarray(mu) + aux["sigma"] * rng.standard_t(aux["nu"], len(mu))


def _beta(mu, trials, aux, rng):
    mu = np.clip(mu, UNIT_EPS, 1 - UNIT_EPS)
    return np.clip(rng.beta(mu * aux["kappa"], (1 - mu) * aux["kappa"]), UNIT_EPS, 1 - UNIT_EPS)


def _exponential(mu, trials, aux, rng):
    return rng.exponential(mu)


def _weibull(mu, trials, aux, rng):
    from scipy.special import gamma

    k = aux["alpha"]
    return np.asarray(mu) / gamma(1 + 1 / k) * rng.weibull(k, len(mu))


def _hurdle(positive: Simulator) -> Simulator:
    def simulate(mu, trials, aux, rng):
        keep = _nonzero(aux["psi"], len(mu), rng)
        y = positive(np.asarray(mu, dtype=float), trials, aux, rng)
        return np.where(keep, y, 0).astype(y.dtype)
    return simulate


def _zero_inflated(count: Simulator) -> Simulator:
    def simulate(mu, trials, aux, rng):
        keep = _nonzero(aux["psi"], len(mu), rng)
        return np.where(keep, count(np.asarray(mu, dtype=float), trials, aux, rng), 0).astype("int64")
    return simulate


# ----------------------------------------------------------------------------- moments


def _identity_mean(m, aux):
    return m


def _lognormal_mean(m, aux):
    return np.exp(m + aux["sigma"] ** 2 / 2)


def _psi_times(mean: Moment) -> Moment:
    """A mixture with a point mass at zero of weight 1 - psi."""
    return lambda m, aux: aux["psi"] * mean(m, aux)


def _hurdle_poisson_mean(m, aux):
    return aux["psi"] * m / -np.expm1(-m)


def _hurdle_nb_mean(m, aux):
    return aux["psi"] * m / (1 - _nb_zero(m, aux["alpha"]))


def _from_second(mean: Moment, second: Moment) -> Moment:
    """The variance from the mean and the second moment E[y^2]."""
    return lambda m, aux: np.maximum(second(m, aux) - mean(m, aux) ** 2, 0.0)


def _t_var(m, aux):
    nu = aux["nu"]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(nu > 2, aux["sigma"] ** 2 * nu / (nu - 2), np.inf)
    return np.broadcast_to(v, np.broadcast_shapes(np.shape(m), np.shape(v))).copy()


def _weibull_var(m, aux):
    from scipy.special import gamma

    k = aux["alpha"]
    return m ** 2 * (gamma(1 + 2 / k) / gamma(1 + 1 / k) ** 2 - 1)


# second moments E[y^2] of the non-zero parts
def _lognormal_sq(m, aux):
    return np.exp(2 * m + 2 * aux["sigma"] ** 2)


def _gamma_sq(m, aux):
    return m ** 2 * (1 + 1 / aux["alpha"])


def _poisson_sq(m, aux):
    return m + m ** 2


def _nb_sq(m, aux):
    return m + m ** 2 * (1 + 1 / aux["alpha"])


# ----------------------------------------------------------------------------- default priors


def _sd_of(log: bool):
    """HalfStudentT(4, sd(y)), as the gaussian sigma's; with ``log`` HalfNormal(sd(log(y))) over
    y > 0 (Bambi's HalfNormal: the expected outcome exp(mu + sigma^2 / 2) explodes in the tail of
    a HalfStudentT, e.g. exp(12.5) at sigma = 5)."""
    def rule(y, w):
        if log:
            y, w = _positive(y, w)
            y = np.log(y)
        sd = _wsd(y, w) if len(y) > 1 else 1.0
        sd = sd if sd > 0 else 1.0
        if log:
            return "HalfNormal", (("sigma", sd),), "sd(log(y)) over y > 0"
        return "HalfStudentT", (("nu", 4.0), ("sigma", sd)), "sd(y)"
    return rule


def _half_cauchy(y, w):
    return "HalfCauchy", (("beta", 1.0),), "Bambi's default (does not depend on the data)"


def _uniform_share(y, w):
    return "Beta", (("alpha", 1.0), ("beta", 1.0)), "uniform over (0, 1): any share of non-zeros"


def _student_nu(y, w):
    return "Gamma", (("alpha", 2.0), ("beta", 0.1)), "Gamma(2, 0.1) (mean 20), Bambi's and brms's default"


def _beta_precision(y, w):
    m, v = _wmean(y, w), _wsd(y, w) ** 2
    kappa = m * (1 - m) / v - 1 if v > 0 else 1.0
    kappa = max(float(kappa), 1.0)
    return "HalfCauchy", (("beta", round(kappa, 3)),), "the precision m(1 - m)/var(y) - 1 of the outcome"


def _loc_identity(y, w):
    sd = _wsd(y, w)
    return _wmean(y, w), (sd if sd > 0 else 1.0), "mean(y), 2.5 sd(y)"


def _loc_log_y(y, w):
    y, w = _positive(y, w)
    ly = np.log(y)
    sd = _wsd(ly, w) if len(y) > 1 else 1.0
    return _wmean(ly, w), (sd if sd > 0 else 1.0), "mean(log(y)), 2.5 sd(log(y)) over y > 0"


def _loc_log_mean(positive_only):
    def rule(y, w):
        if positive_only:
            y, w = _positive(y, w)
        m = _wmean(y, w) if len(y) else 1.0
        return float(np.log(m)) if m > 0 else 0.0, 1.0, (
            "log(mean(y)) over y > 0, 2.5 on the log scale" if positive_only else
            "log(mean(y)), 2.5 on the log scale")
    return rule


def _loc_logit_mean(y, w):
    m = min(max(_wmean(y, w), 1e-6), 1 - 1e-6)
    return float(np.log(m / (1 - m))), 1.0, "logit(mean(y)), 2.5 on the logit scale"


# ----------------------------------------------------------------------------- the records


@dataclass(frozen=True)
class Support:
    """The values an outcome may take: numbers above ``lower`` (``>=`` when ``closed``), below
    ``upper`` (strictly), whole numbers when ``whole``; ``hints`` say what to do instead."""

    lower: float = -np.inf
    closed: bool = False
    upper: float = np.inf
    whole: bool = False
    text: str = ""  # the support as people read it: "y > 0", "0 < y < 1"
    below_hint: str = ""  # for values at or below the lower bound
    above_hint: str = ""
    fraction_hint: str = ""  # for values that are not whole numbers


@dataclass(frozen=True)
class Family:
    """What the pipeline needs to know of a response family."""

    name: str
    link: str  # the default link, which predictions invert (Bambi's, except gamma: see its record)
    response: Literal["binary", "proportion", "count", "real", "category", "ordinal"]
    binary: bool = False  # a probability per row: odds ratios, decision numbers, binomial cells
    aggregatable: bool = False  # identical rows can be fitted as one binomial cell
    categories: Literal["", "categorical", "ordinal"] = ""  # one estimand per response category
    auxiliary: tuple[str, ...] = ()  # the family's own parameters in the posterior (sigma, alpha, psi...)
    simulate: Simulator | None = None  # None: recover does not support it yet
    mean: Moment | None = None  # E[y] given the parent parameter; None: the parent parameter is E[y]
    variance: Moment | None = None  # Var[y] given the parent parameter (the PPC's noise); None: see ppc.py
    support: Support | None = None  # the data check; None: the checks of data/tables.py
    location: Location | None = None  # the default priors' centre and scale; None: plan.py's rules
    priors: tuple[tuple[str, PriorRule], ...] = ()  # default prior of each auxiliary parameter
    estimand: str = ""  # E[y] on the outcome scale, for the docs

    @property
    def has_categories(self) -> bool:
        return bool(self.categories)

    @property
    def fast_sums(self) -> bool:
        """Poststratified with the fused weighted sums (one expected value per cell and draw)."""
        return not self.categories

    def expected(self, m: np.ndarray, aux: Aux) -> np.ndarray:
        """The expected outcome given the parent parameter ``m`` and the auxiliary parameters."""
        return m if self.mean is None else self.mean(m, aux)


POSITIVE = Support(0.0, text="y > 0", below_hint="for an outcome with zeros (most users spend nothing) use a hurdle "
                   "family: hurdle_gamma or hurdle_lognormal")
NON_NEGATIVE = Support(0.0, closed=True, text="y >= 0", below_hint="a hurdle family models zeros and positive "
                       "amounts; for negative values use gaussian or t")
COUNTS = Support(0.0, closed=True, whole=True, text="whole numbers >= 0",
                 below_hint="counts are >= 0; for negative values use gaussian or t",
                 fraction_hint="for amounts with zeros use hurdle_gamma or hurdle_lognormal")
UNIT = Support(0.0, upper=1.0, text="0 < y < 1",
               below_hint="a beta outcome lies strictly inside (0, 1): squeeze 0 and 1 inwards, e.g. "
                          "(y (n - 1) + 0.5) / n, or model successes out of trials with p(successes, trials) "
                          "and family = \"binomial\"",
               above_hint="a beta outcome is a share strictly inside (0, 1)")
REAL = Support(text="any number")

_HURDLE_LN_MEAN = _psi_times(_lognormal_mean)
_HURDLE_G_MEAN = _psi_times(_identity_mean)
_ZI_MEAN = _psi_times(_identity_mean)

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("bernoulli", "logit", "binary", binary=True, aggregatable=True, simulate=_bernoulli),
    Family("binomial", "logit", "proportion", binary=True, aggregatable=True, simulate=_binomial),
    Family("gaussian", "identity", "real", auxiliary=("sigma",), simulate=_gaussian),
    Family("poisson", "log", "count", simulate=_poisson),
    Family("negativebinomial", "log", "count", auxiliary=("alpha",), simulate=_negativebinomial),
    Family("categorical", "softmax", "category", categories="categorical"),
    Family("cumulative", "logit", "ordinal", categories="ordinal", auxiliary=("threshold",)),
    # Bambi's gamma link is "inverse"; the log link is the default here (multiplicative effects,
    # a mean that stays positive); link = "inverse" gives Bambi's.
    Family("gamma", "log", "real", auxiliary=("alpha",), simulate=_gamma,
           variance=lambda m, aux: m ** 2 / aux["alpha"], support=POSITIVE,
           location=_loc_log_mean(False), priors=(("alpha", _half_cauchy),), estimand="mu"),
    Family("lognormal", "identity", "real", auxiliary=("sigma",), simulate=_lognormal, mean=_lognormal_mean,
           variance=_from_second(_lognormal_mean, _lognormal_sq), support=POSITIVE, location=_loc_log_y,
           priors=(("sigma", _sd_of(log=True)),), estimand="exp(mu + sigma^2 / 2)"),
    Family("t", "identity", "real", auxiliary=("sigma", "nu"), simulate=_t, variance=_t_var, support=REAL,
           location=_loc_identity, priors=(("sigma", _sd_of(log=False)), ("nu", _student_nu)),
           estimand="mu (defined for nu > 1)"),
    Family("beta", "logit", "real", auxiliary=("kappa",), simulate=_beta,
           variance=lambda m, aux: m * (1 - m) / (1 + aux["kappa"]), support=UNIT, location=_loc_logit_mean,
           priors=(("kappa", _beta_precision),), estimand="mu"),
    Family("exponential", "log", "real", simulate=_exponential, variance=lambda m, aux: m ** 2,
           support=POSITIVE, location=_loc_log_mean(False), estimand="mu"),
    Family("weibull", "log", "real", auxiliary=("alpha",), simulate=_weibull, variance=_weibull_var,
           support=POSITIVE, location=_loc_log_mean(False), priors=(("alpha", _half_cauchy),), estimand="mu"),
    Family("hurdle_lognormal", "identity", "real", auxiliary=("sigma", "psi"), simulate=_hurdle(_lognormal),
           mean=_HURDLE_LN_MEAN, variance=_from_second(_HURDLE_LN_MEAN, _psi_times(_lognormal_sq)),
           support=NON_NEGATIVE, location=_loc_log_y, priors=(("sigma", _sd_of(log=True)),
                                                              ("psi", _uniform_share)),
           estimand="psi exp(mu + sigma^2 / 2)"),
    Family("hurdle_gamma", "log", "real", auxiliary=("alpha", "psi"), simulate=_hurdle(_gamma),
           mean=_HURDLE_G_MEAN, variance=_from_second(_HURDLE_G_MEAN, _psi_times(_gamma_sq)),
           support=NON_NEGATIVE, location=_loc_log_mean(True),
           priors=(("alpha", _half_cauchy), ("psi", _uniform_share)), estimand="psi mu"),
    Family("hurdle_poisson", "log", "count", auxiliary=("psi",),
           simulate=_hurdle(lambda m, t, aux, rng: _zero_truncated_poisson(m, rng)), mean=_hurdle_poisson_mean,
           variance=_from_second(_hurdle_poisson_mean,
                                 lambda m, aux: aux["psi"] * _poisson_sq(m, aux) / -np.expm1(-m)),
           support=COUNTS, location=_loc_log_mean(True), priors=(("psi", _uniform_share),),
           estimand="psi mu / (1 - exp(-mu))"),
    Family("hurdle_negativebinomial", "log", "count", auxiliary=("alpha", "psi"),
           simulate=_hurdle(lambda m, t, aux, rng: _zero_truncated_nb(m, aux["alpha"], rng)),
           mean=_hurdle_nb_mean,
           variance=_from_second(_hurdle_nb_mean, lambda m, aux: aux["psi"] * _nb_sq(m, aux)
                                 / (1 - _nb_zero(m, aux["alpha"]))),
           support=COUNTS, location=_loc_log_mean(True), priors=(("alpha", _half_cauchy), ("psi", _uniform_share)),
           estimand="psi mu / (1 - (alpha / (alpha + mu))^alpha)"),
    Family("zero_inflated_poisson", "log", "count", auxiliary=("psi",), simulate=_zero_inflated(_poisson),
           mean=_ZI_MEAN, variance=_from_second(_ZI_MEAN, _psi_times(_poisson_sq)), support=COUNTS,
           location=_loc_log_mean(True), priors=(("psi", _uniform_share),), estimand="psi mu"),
    Family("zero_inflated_negativebinomial", "log", "count", auxiliary=("alpha", "psi"),
           simulate=_zero_inflated(_negativebinomial), mean=_ZI_MEAN,
           variance=_from_second(_ZI_MEAN, _psi_times(_nb_sq)), support=COUNTS, location=_loc_log_mean(True),
           priors=(("alpha", _half_cauchy), ("psi", _uniform_share)), estimand="psi mu"),
)}


def family(name: str) -> Family:
    """The record of a family the spec has already validated."""
    return FAMILIES[name]
