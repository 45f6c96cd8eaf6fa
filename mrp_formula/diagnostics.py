"""Convergence diagnostics of the fit and of the estimands, with advice.

Pure functions over the posterior DataTree and numpy arrays (arviz does the maths).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100


def ess_rhat(x: np.ndarray) -> tuple[float, float]:
    """Bulk ESS and rank-normalised R-hat of one quantity given as (chains, draws)."""
    import arviz as az

    da = xr.DataArray(np.asarray(x, dtype=float), dims=("chain", "draw"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ess = float(az.ess(da, method="bulk"))
            rhat = float(az.rhat(da)) if x.shape[0] > 1 else math.nan
        except Exception:
            return math.nan, math.nan
    return ess, rhat


@dataclass(frozen=True)
class Thresholds:
    rhat_max: float = RHAT_MAX
    ess_min: float = 400
    divergences_max: int = 0
    target_accept: float = 0.9


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
            out.append(f"{self.divergences} divergent transitions: the sampler missed part of the posterior. "
                       f"Raise fit.target_accept (now {t.target_accept}) towards 0.99, or switch "
                       f"model.parameterization (centered <-> noncentered) for the group terms.")
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
        params_bad = self.max_rhat > t.rhat_max or self.min_ess_bulk < ESS_MIN_PER_CHAIN * self.n_chains
        if params_bad:
            msg = (f"model parameters mix poorly (max R-hat {self.max_rhat:.3f}, min bulk ESS "
                   f"{self.min_ess_bulk:.0f}; worst: {', '.join(list(self.worst)[:3])})")
            if not out:
                msg += (f". The estimands are fine (max R-hat {self.estimand_max_rhat:.3f}, min ESS "
                        f"{self.estimand_min_ess:.0f}) and they are what is reported: parameters that trade "
                        f"off against each other (an intercept and a group effect) can mix badly while the "
                        f"population averages they imply do not. Judge the run by the estimands")
            else:
                msg += "; a different parameterization or more draws may help"
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


def fit_diagnostics(dt, estimand_draws: np.ndarray | None = None, n_chains: int = 1,
                    n_draws: int = 1) -> Diagnostics:
    import arviz as az

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(post) if post.sizes.get("chain", 1) > 1 else None
        ess = az.ess(post, method="bulk")
        ess_t = az.ess(post, method="tail")
    rmax, emin, etmin, worst = 1.0, math.inf, math.inf, {}
    for name in post.data_vars:
        e = float(np.nanmin(ess[name].to_numpy())) if ess[name].size else math.inf
        et = float(np.nanmin(ess_t[name].to_numpy())) if ess_t[name].size else math.inf
        r = float(np.nanmax(rhat[name].to_numpy())) if rhat is not None and rhat[name].size else math.nan
        worst[name] = (r, e)
        rmax = max(rmax, r) if not math.isnan(r) else rmax
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
