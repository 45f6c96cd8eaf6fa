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

    def warnings(self, target_accept: float) -> list[str]:
        out = []
        min_ess = ESS_MIN_PER_CHAIN * self.n_chains
        if self.divergences:
            out.append(f"{self.divergences} divergent transitions: the posterior geometry is hard for NUTS. "
                       f"Raise fit.target_accept (now {target_accept}) towards 0.99, or switch "
                       f"model.parameterization (centered <-> noncentered).")
        est_ok = (not math.isnan(self.estimand_max_rhat) and self.estimand_max_rhat <= RHAT_MAX
                  and self.estimand_min_ess >= min_ess)
        if self.max_rhat > RHAT_MAX or self.min_ess_bulk < min_ess:
            msg = (f"model parameters mix poorly (max R-hat {self.max_rhat:.3f}, min bulk ESS "
                   f"{self.min_ess_bulk:.0f})")
            if est_ok:
                msg += (f"; the estimands are fine (max R-hat {self.estimand_max_rhat:.3f}, min ESS "
                        f"{self.estimand_min_ess:.0f}), and they are what is reported. Parameters that "
                        f"trade off (an intercept and a group effect) often mix badly while the population "
                        f"averages they imply do not")
            else:
                msg += "; run more draws (fit.draws), or change the parameterization"
            out.append(msg + ".")
        if not math.isnan(self.estimand_max_rhat) and not est_ok:
            out.append(f"estimands mix poorly (max R-hat {self.estimand_max_rhat:.3f}, min ESS "
                       f"{self.estimand_min_ess:.0f}): do not trust the intervals; run more draws "
                       f"(fit.draws) or more chains.")
        return out

    def to_json(self) -> dict:
        def num(v):
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        return {"divergences": self.divergences, "max_rhat": num(self.max_rhat),
                "min_ess_bulk": num(self.min_ess_bulk), "min_ess_tail": num(self.min_ess_tail),
                "estimand_max_rhat": num(self.estimand_max_rhat),
                "estimand_min_ess_bulk": num(self.estimand_min_ess),
                "worst_parameters": {k: [num(a), num(b)] for k, a, b in
                                     [(k, *v) for k, v in self.worst.items()]}}


def fit_diagnostics(dt, estimand_draws: np.ndarray | None = None, n_chains: int = 1,
                    n_draws: int = 1) -> Diagnostics:
    import arviz as az

    post = dt["posterior"].to_dataset()
    divergences = 0
    if "sample_stats" in dt.children and "diverging" in dt["sample_stats"].to_dataset():
        divergences = int(dt["sample_stats"]["diverging"].sum())
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
        est_e = float(min(p[0] for p in pairs))
        est_r = float(max(p[1] for p in pairs)) if n_chains > 1 else math.nan
    return Diagnostics(divergences=divergences, max_rhat=rmax, min_ess_bulk=emin, min_ess_tail=etmin,
                       worst=worst, estimand_max_rhat=est_r, estimand_min_ess=est_e,
                       n_samples=n_chains * n_draws, n_chains=n_chains)
