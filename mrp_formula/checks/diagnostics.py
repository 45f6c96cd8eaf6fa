"""Convergence diagnostics of the fit and of the estimands, with advice.

Pure functions over the posterior DataTree and numpy arrays.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100


CONSTANT = 1e-9  # draws that span less than this (relative to their size) are one number


def ess_rhat(x: np.ndarray) -> tuple[float, float]:
    """Bulk ESS and rank-normalised R-hat of one quantity given as (chains, draws); none (NaN) for a
    quantity whose draws do not vary beyond rounding (an estimand the calibration fixes: its ranks
    would be rounding noise, and its ESS and R-hat meaningless)."""
    x = np.asarray(x, dtype=float)
    if x.size and np.isfinite(x).all() and np.ptp(x) <= CONSTANT * max(1.0, float(np.abs(x).max())):
        return math.nan, math.nan
    return ess_bulk(x), (rhat(x) if x.shape[0] > 1 else math.nan)


# Rank-normalised split R-hat and bulk/tail ESS (Vehtari, Gelman, Simpson, Carpenter and
# Burkner 2021), the same arithmetic as arviz-stats; tests/test_diagnostics.py checks them against
# it. Written out here so that a run whose fit is cached does not import arviz.


def _split(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.vstack((x[:, :half], x[:, -half:]))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of the values of ``x`` (same shape), ties given their average rank."""
    _, inverse, counts = np.unique(np.ravel(x), return_inverse=True, return_counts=True)
    before = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return (before + (counts + 1) / 2.0)[inverse].reshape(np.shape(x))


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the average ranks (Blom's offset 3/8)."""
    from scipy.special import ndtri

    return ndtri((average_ranks(x) - 0.375) / (x.size + 0.25))


def _valid(x: np.ndarray, min_chains: int) -> bool:
    return x.ndim == 2 and x.shape[0] >= min_chains and x.shape[1] >= 4 and not np.isnan(x).any()


def _rhat_plain(x: np.ndarray) -> float:
    n = x.shape[1]
    between = n * np.var(x.mean(axis=1), ddof=1)
    within = np.mean(np.var(x, axis=1, ddof=1))
    return float(np.sqrt((between / within + n - 1) / n))


def rhat(x: np.ndarray) -> float:
    """Rank-normalised split R-hat: the larger of the bulk and the folded (tail) value."""
    x = np.asarray(x, dtype=float)
    if not _valid(x, 2):
        return math.nan
    s = _split(x)
    return max(_rhat_plain(_z_scale(s)), _rhat_plain(_z_scale(np.abs(s - np.median(s)))))


def _autocov(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    m = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x - x.mean(axis=1, keepdims=True), n=m, axis=1)
    return np.fft.irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n


def _ess(x: np.ndarray) -> float:
    """ESS of (chains, draws) by Geyer's initial monotone sequence."""
    if np.max(x) - np.min(x) < np.finfo(float).resolution:
        return float(x.size)
    n_chain, n_draw = x.shape
    acov = _autocov(x)
    mean_var = np.mean(acov[:, 0]) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(x.mean(axis=1), ddof=1)
    rho = np.zeros(n_draw)
    mean_acov = acov.mean(axis=0)
    even, odd = 1.0, 1.0 - (mean_var - mean_acov[1]) / var_plus
    rho[0], rho[1] = even, odd
    t = 1
    while t < n_draw - 3 and even + odd > 0.0:
        even = 1.0 - (mean_var - mean_acov[t + 1]) / var_plus
        odd = 1.0 - (mean_var - mean_acov[t + 2]) / var_plus
        if even + odd >= 0:
            rho[t + 1], rho[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        rho[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    size = n_chain * n_draw
    tau = -1.0 + 2.0 * np.sum(rho[:max_t + 1]) + np.sum(rho[max_t + 1:max_t + 2])
    tau = max(tau, 1 / np.log10(size))
    return math.nan if np.isnan(rho).any() else float(size / tau)


def ess_bulk(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    return _ess(_z_scale(_split(x))) if _valid(x, 1) else math.nan


def ess_tail(x: np.ndarray, probs: tuple[float, float] = (0.05, 0.95)) -> float:
    """The smaller ESS of the indicators of being below the 5% and the 95% quantiles (as in
    Vehtari et al. and Stan; arviz-stats 1.x takes its ``ci_prob``, 0.89, unless told)."""
    x = np.asarray(x, dtype=float)
    if not _valid(x, 1):
        return math.nan
    return min(_ess(_split((x <= np.quantile(x, p)).astype(float))) for p in probs)


def _per_element(da: xr.DataArray) -> np.ndarray:
    """A parameter's draws as (elements, chains, draws)."""
    da = da.transpose("chain", "draw", ...)
    arr = da.to_numpy()
    return np.moveaxis(arr.reshape(arr.shape[0], arr.shape[1], -1), 2, 0)


@dataclass(frozen=True)
class Thresholds:
    rhat_max: float = RHAT_MAX
    ess_min: float = 400
    divergences_max: int = 0
    target_accept: float = 0.9
    switchable: bool | None = True  # a group term whose parameterization can be switched; None: no group term


def divergence_advice(target_accept: float | None, switchable: bool | None) -> str:
    """What to do about divergent transitions: a higher target_accept, and switching a group term's
    parameterization where one can be switched (a structured term's effects are always non-centred;
    ``None``: the model has no group term)."""
    now = f" (now {target_accept})" if target_accept is not None else ""
    if switchable is None:
        return f"raise fit.target_accept{now} towards 0.99, and check that the priors fit the data's scale"
    if switchable:
        return (f"raise fit.target_accept{now} towards 0.99, or switch a group term's parameterization (centered "
                f"<-> noncentered, or a centring weight; the run's notes give each term's), e.g. "
                f"model.parameterization = {{ \"1|x\" = \"centered\" }}")
    return (f"raise fit.target_accept{now} towards 0.99, or give the structured terms' sds tighter priors "
            f"(every group term here is structured, so always non-centred)")


def trading_pair(switchable: bool | None) -> str:
    """Two parameters that trade off in this model (``switchable`` None: it has no group term)."""
    return "an intercept and a group effect" if switchable is not None else "two parameters (an intercept and a slope, say)"


def mixing_advice(switchable: bool | None) -> str:
    """What helps parameters that mix poorly: a parameterization exists to switch only with group terms."""
    if switchable is None:
        return "more draws may help, or a predictor centred or put on a smaller scale"
    return "a different parameterization or more draws may help"


@dataclass(frozen=True)
class Diagnostics:
    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    worst: dict = field(default_factory=dict)  # parameter -> (rhat, ess)
    estimand_max_rhat: float = math.nan
    estimand_min_ess: float = math.nan
    n_samples: int = 0
    n_chains: int = 0
    bfmi_min: float = math.nan
    treedepth_hits: int = 0

    def problems(self, t: Thresholds) -> list[str]:
        """Failed checks that make the reported numbers untrustworthy (``--strict`` exits 5)."""
        out = []
        if self.divergences > t.divergences_max:
            advice = divergence_advice(t.target_accept, t.switchable)
            out.append(f"{self.divergences} divergent transition{'s' if self.divergences != 1 else ''}: the sampler "
                       f"missed part of the posterior. {advice[0].upper() + advice[1:]}.")
        if not math.isnan(self.estimand_max_rhat) and self.estimand_max_rhat > t.rhat_max:
            out.append(f"estimands have not converged (max R-hat {self.estimand_max_rhat:.3f} > {t.rhat_max}): "
                       f"the chains disagree; run more draws (fit.draws, fit.tune) and check the priors.")
        if not math.isnan(self.estimand_min_ess) and self.estimand_min_ess < t.ess_min:
            out.append(f"estimands have too few effective draws (min bulk ESS {self.estimand_min_ess:.0f} < "
                       f"{t.ess_min:g}): intervals are noisy; run more draws (fit.draws).")
        return out

    def warnings(self, t: Thresholds) -> list[str]:
        """Everything worth saying: the failed checks, then advice about the parameters."""
        out = self.problems(t)
        if self.n_chains == 1:
            out.append("one chain: R-hat, which compares chains, cannot be computed, so whether the sampler "
                       "converged is not checked; run 2 or more chains (fit.chains)")
        params_bad = self.max_rhat > t.rhat_max or self.min_ess_bulk < ESS_MIN_PER_CHAIN * self.n_chains
        if params_bad:
            rhat = f"max R-hat {self.max_rhat:.3f}, " if not math.isnan(self.max_rhat) else ""
            msg = (f"model parameters mix poorly ({rhat}min bulk ESS "
                   f"{self.min_ess_bulk:.0f}; worst: {', '.join(list(self.worst)[:3])})")
            if not out:
                msg += (f". The estimands are fine (max R-hat {self.estimand_max_rhat:.3f}, min ESS "
                        f"{self.estimand_min_ess:.0f}) and they are what is reported: parameters that trade "
                        f"off against each other ({trading_pair(t.switchable)}) can mix badly while the "
                        f"population averages they imply do not. Judge the run by the estimands")
            else:
                msg += f"; {mixing_advice(t.switchable)}"
            out.append(msg + ".")
        if not math.isnan(self.bfmi_min) and self.bfmi_min < 0.3:
            out.append(f"low energy BFMI ({self.bfmi_min:.2f} < 0.3): the sampler explores the tails poorly; "
                       f"a non-centred parameterization or tighter priors on group scales usually help.")
        if self.treedepth_hits:
            out.append(f"{self.treedepth_hits} transitions hit the maximum tree depth: sampling is slow and may "
                       f"be inefficient; consider rescaling predictors or stronger priors.")
        return out

    def to_json(self) -> dict:
        def num(v):
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        return {"divergences": self.divergences, "max_rhat": num(self.max_rhat),
                "min_ess_bulk": num(self.min_ess_bulk), "min_ess_tail": num(self.min_ess_tail),
                "estimand_max_rhat": num(self.estimand_max_rhat),
                "estimand_min_ess_bulk": num(self.estimand_min_ess),
                "bfmi_min": num(self.bfmi_min), "treedepth_hits": self.treedepth_hits,
                "worst_parameters": {k: [num(a), num(b)] for k, (a, b) in self.worst.items()}}


def _nanmin(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return min(values) if values else math.inf


def _nanmax(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values else math.nan


def fit_diagnostics(dt, estimand_draws: np.ndarray | None = None, n_chains: int = 1,
                    n_draws: int = 1) -> Diagnostics:
    post = dt["posterior"].to_dataset()
    stats = dt["sample_stats"].to_dataset() if "sample_stats" in dt.children else None
    divergences = int(stats["diverging"].sum()) if stats is not None and "diverging" in stats else 0
    hits = 0
    if stats is not None:
        for name in ("maxdepth_reached", "reached_max_treedepth"):
            if name in stats:
                hits = int(stats[name].sum())
    bfmi = math.nan
    if stats is not None and "energy" in stats:
        e = stats["energy"].to_numpy()
        bfmi = float(np.min(np.sum(np.diff(e, axis=1) ** 2, axis=1) / np.sum((e - e.mean(axis=1, keepdims=True)) ** 2,
                                                                           axis=1)))
    chains = post.sizes.get("chain", 1)
    rmax, emin, etmin, worst = math.nan, math.inf, math.inf, {}  # R-hat: nan with one chain (not computed)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for name in post.data_vars:
            elements = _per_element(post[name])
            if not len(elements):
                continue
            e = _nanmin([ess_bulk(x) for x in elements])
            et = _nanmin([ess_tail(x) for x in elements])
            r = _nanmax([rhat(x) for x in elements]) if chains > 1 else math.nan
            worst[name] = (r, e)
            rmax = r if math.isnan(rmax) else (max(rmax, r) if not math.isnan(r) else rmax)
            emin, etmin = min(emin, e), min(etmin, et)
    worst = dict(sorted(worst.items(), key=lambda kv: kv[1][1])[:5])
    est_r, est_e = math.nan, math.nan
    if estimand_draws is not None and len(estimand_draws):
        pairs = [ess_rhat(row.reshape(n_chains, n_draws)) for row in estimand_draws]
        est_e = float(np.nanmin([p[0] for p in pairs]))
        est_r = float(np.nanmax([p[1] for p in pairs])) if n_chains > 1 else math.nan
    return Diagnostics(divergences=divergences, max_rhat=rmax, min_ess_bulk=emin, min_ess_tail=etmin,
                       worst=worst, estimand_max_rhat=est_r, estimand_min_ess=est_e,
                       n_samples=n_chains * n_draws, n_chains=n_chains, bfmi_min=bfmi, treedepth_hits=hits)
