"""Structured priors of group effects, as pure numpy: the precision matrices of random walks and
of the ICAR over an adjacency graph, its connected components, the BYM2 scaling factors, and the
covariance factor that the sampler turns into effects (nothing here imports PyMC).

Every structured prior here is an intrinsic Gaussian Markov random field ``p(u) ~ exp(-u'Qu / 2)``
restricted to the subspace its constraints leave (sum to zero per connected component), or a
proper AR(1). The sampler draws ``u = sigma * A z`` with ``z`` standard normal, where ``A`` is the
*covariance factor* of :func:`covariance_factor`: ``A A' = Q^-`` (the Moore-Penrose inverse, which
is the covariance of the field under the sum-to-zero constraints), so the parameterization is
non-centred and the constraints hold exactly. Levels of the group that the sample lacks are rows of
``A`` like the others: their effects come from the structure (interpolated along a walk, pulled
towards their neighbours), not from independent draws.

Islands and disconnected parts (Freni-Sterrantino, Ventrucci & Rue 2018): the ICAR is defined
per connected component, with one sum-to-zero constraint per component of two or more areas; a
singleton (an island, such as Alaska or Hawaii in a contiguity table) has no neighbours and gets
an independent N(0, 1) effect (times sigma). For BYM2 (Riebler et al. 2016) each component's
ICAR part is scaled by its own scaling factor, the geometric mean of the marginal variances of
the component's generalised inverse, so that its typical marginal variance is 1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

KINDS = ("iid", "rw1", "rw2", "ar1", "icar", "bym2")
ORDERED = ("rw1", "rw2", "ar1")
SPATIAL = ("icar", "bym2")
MIN_LEVELS = {"rw1": 2, "rw2": 3, "ar1": 2, "icar": 1, "bym2": 1}
EIGEN_TOL = 1e-9  # eigenvalues below this times the largest are the null space


# ----------------------------------------------------------------------------- graphs


def edge_array(n: int, edges) -> np.ndarray:
    """Undirected edges as a sorted (m, 2) int array with i < j, duplicates and self-loops dropped."""
    e = np.asarray(list(edges), dtype=np.int64).reshape(-1, 2)
    if len(e) and (e.min() < 0 or e.max() >= n):
        raise ValueError(f"an edge names a node outside 0..{n - 1}")
    e = np.sort(e, axis=1)
    e = e[e[:, 0] != e[:, 1]]
    return np.unique(e, axis=0) if len(e) else e


def components(n: int, edges) -> np.ndarray:
    """The connected component of every node, numbered 0, 1, ... in the order of each
    component's first node (union-find; a node without edges is its own component)."""
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in edge_array(n, edges):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([root(i) for i in range(n)], dtype=np.int64)
    _, first, labels = np.unique(roots, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # number the components by their first node
    return order[labels].astype(np.int64)


def icar_precision(n: int, edges) -> np.ndarray:
    """Q = D - W of the adjacency graph (D: numbers of neighbours, W: adjacency)."""
    Q = np.zeros((n, n))
    for i, j in edge_array(n, edges):
        Q[i, j] = Q[j, i] = -1.0
    Q[np.diag_indices(n)] = -Q.sum(1)
    return Q


def rw_precision(n: int, order: int) -> np.ndarray:
    """D'D of the ``order``-th differences of n ordered levels (RW1: order 1, RW2: order 2)."""
    D = np.diff(np.eye(n), n=order, axis=0)
    return D.T @ D


def walk_edges(n: int) -> np.ndarray:
    """The edges of a path over n ordered levels (RW1's graph)."""
    return np.column_stack([np.arange(n - 1), np.arange(1, n)]).astype(np.int64)


# ----------------------------------------------------------------------------- factors


def _range_factor(Q: np.ndarray) -> np.ndarray:
    """A with A A' = Q^- (Moore-Penrose): eigenvectors of the non-null eigenvalues, each over the
    square root of its eigenvalue; column signs fixed (largest entry positive) so that the factor
    is a function of Q alone."""
    lam, V = np.linalg.eigh((Q + Q.T) / 2)
    keep = lam > EIGEN_TOL * max(float(lam.max()), 1.0)
    V, lam = V[:, keep], lam[keep]
    big = np.abs(V).argmax(0)
    V = V * np.sign(V[big, np.arange(V.shape[1])])
    return V / np.sqrt(lam)


def scaling_factor(Q: np.ndarray) -> float:
    """Riebler's scaling factor of one connected component: the geometric mean of the marginal
    variances of the generalised inverse of its ICAR precision."""
    var = np.diag(np.linalg.pinv(Q, hermitian=True))
    return float(np.exp(np.mean(np.log(var))))


def component_scaling(n: int, edges) -> tuple[np.ndarray, np.ndarray]:
    """(component of every node, scaling factor of every component; 1 for a singleton)."""
    comp = components(n, edges)
    Q = icar_precision(n, edges)
    out = np.ones(comp.max() + 1 if n else 0)
    for c in range(len(out)):
        idx = np.flatnonzero(comp == c)
        if len(idx) > 1:
            out[c] = scaling_factor(Q[np.ix_(idx, idx)])
    return comp, out


def icar_factor(n: int, edges, *, scaled: bool) -> np.ndarray:
    """Covariance factor of the ICAR per connected component (sum to zero in each), scaled by
    each component's scaling factor when ``scaled`` (BYM2); a singleton gets a unit column (an
    independent N(0, 1) effect)."""
    comp, scale = component_scaling(n, edges)
    Q = icar_precision(n, edges)
    cols = []
    for c in range(len(scale)):
        idx = np.flatnonzero(comp == c)
        block = np.zeros((n, max(len(idx) - 1, 1)))
        if len(idx) == 1:
            block[idx[0], 0] = 1.0
        else:
            block[idx] = _range_factor(Q[np.ix_(idx, idx)]) / (np.sqrt(scale[c]) if scaled else 1.0)
        cols.append(block)
    return np.hstack(cols) if cols else np.zeros((0, 0))


def walk_factor(n: int, order: int) -> np.ndarray:
    """Covariance factor of an RW1 (order 1) or RW2 (order 2) over n ordered levels: effects whose
    differences of that order are N(0, 1), orthogonal to the walk's null space (constants; for RW2
    also linear trends)."""
    return _range_factor(rw_precision(n, order))


def linear_trend(n: int) -> np.ndarray:
    """The centred linear trend over n ordered levels, with unit standard deviation: RW2's null
    space beyond the level, which its own prior carries (see ``StructurePlan.trend_sd``)."""
    t = np.arange(n, dtype=float)
    t -= t.mean()
    return t / t.std() if n > 1 else t


def covariance_factor(kind: str, n: int, edges=()) -> np.ndarray:
    """The factor A of a structure over n levels (rows in the plan's level order)."""
    if kind == "rw1":
        return walk_factor(n, 1)
    if kind == "rw2":
        return walk_factor(n, 2)
    if kind in SPATIAL:
        return icar_factor(n, edges, scaled=kind == "bym2")
    raise ValueError(f"no covariance factor for '{kind}'")


def ar1_matrix(n: int, rho: float) -> np.ndarray:
    """u = sigma * M z for a stationary AR(1) with innovation sd sigma (numpy twin of the
    sampler's PyTensor expression, used by tests)."""
    k = np.arange(n)
    diff = k[:, None] - k[None, :]
    M = np.where(diff >= 0, float(rho) ** np.clip(diff, 0, None), 0.0)
    M[:, 0] /= np.sqrt(1 - rho ** 2)
    return M


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class StructurePlan:
    """The structured prior of one group intercept term, as the sampler builds it."""

    term: str  # Bambi's name of the group term, "1|age"
    factor: str  # the grouping variable
    kind: str  # rw1 | rw2 | ar1 | icar | bym2
    levels: tuple[str, ...]  # every level (sample and population), in the structure's order
    factor_matrix: np.ndarray | None = field(default=None, compare=False, repr=False)  # A, (levels, m)
    trend_sd: float = 0.0  # rw2: sd of the linear trend's coefficient (per sd of the level index)
    edges: np.ndarray | None = field(default=None, compare=False, repr=False)  # spatial: (m, 2) level indices
    n_components: int = 1
    islands: tuple[str, ...] = ()  # spatial: levels without neighbours
    scaling: tuple[float, ...] = ()  # bym2: scaling factor per component of two or more levels
    adjacency: str = ""  # spatial: the adjacency file
    order_source: str = ""  # where the order of an ordered group came from

    @property
    def variable(self) -> str:
        """The posterior variable holding the effect of every level (sample and population)."""
        return f"{self.term}_structured"

    @property
    def dim(self) -> str:
        return f"{self.term}__structured_dim"

    def extra_priors(self) -> dict[str, str]:
        """Priors of the structure's own parameters (besides the term's sd)."""
        if self.kind == "ar1":
            return {f"{self.term}_rho": "Uniform(-1, 1)"}
        if self.kind == "bym2":
            return {f"{self.term}_rho": "Beta(0.5, 0.5)"}
        if self.kind == "rw2":
            return {f"{self.term}_trend": f"Normal(0, {self.trend_sd:.4g})"}
        return {}

    def to_json(self) -> dict:
        out = {"term": self.term, "variable": self.factor, "kind": self.kind, "levels": list(self.levels),
               "order": self.order_source, "parameters": self.extra_priors()}
        if self.kind in SPATIAL:
            out.update(adjacency=self.adjacency, edges=int(len(self.edges)) if self.edges is not None else 0,
                       components=self.n_components, islands=list(self.islands))
            if self.kind == "bym2":
                out["scaling_factors"] = [round(s, 6) for s in self.scaling]
        return out

    def key(self) -> dict:
        """What changes the prior (for the fit cache): the description and the graph itself."""
        h = hashlib.sha256()
        if self.edges is not None:
            h.update(np.ascontiguousarray(self.edges, dtype=np.int64).tobytes())
        return {**self.to_json(), "graph": h.hexdigest(), "trend_sd": self.trend_sd}
