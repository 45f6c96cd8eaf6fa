"""The structured priors' matrices (model/structure.py): no sampling."""

import numpy as np
from hypothesis import given, settings, strategies as st_
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mrp_formula.model import structure as st


@st_.composite
def graphs(draw, max_n=14):
    n = draw(st_.integers(1, max_n))
    pairs = draw(st_.lists(st_.tuples(st_.integers(0, n - 1), st_.integers(0, n - 1)), max_size=3 * n))
    return n, pairs


def _same_partition(a, b):
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


@given(graphs())
@settings(deadline=None)
def test_components_match_scipy(g):
    n, pairs = g
    e = st.edge_array(n, pairs)
    W = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)) if len(e) else coo_matrix((n, n))
    k, labels = connected_components(W, directed=False)
    mine = st.components(n, pairs)
    assert mine.max() + 1 == k
    assert _same_partition(mine, labels)
    assert mine[0] == 0 and all(mine[i] <= max(mine[:i], default=-1) + 1 for i in range(n))


@given(graphs())
@settings(deadline=None)
def test_bym2_factor_has_unit_geometric_mean_variance_and_sums_to_zero_per_component(g):
    n, pairs = g
    e = st.edge_array(n, pairs)
    comp = st.components(n, e)
    A = st.icar_factor(n, e, scaled=True)
    cov = A @ A.T
    for c in range(comp.max() + 1):
        idx = np.flatnonzero(comp == c)
        if len(idx) == 1:  # an island: an independent N(0, 1) effect
            assert np.isclose(cov[idx[0], idx[0]], 1.0)
            assert np.allclose(np.delete(cov[idx[0]], idx[0]), 0.0)
            continue
        var = np.diag(cov)[idx]
        assert np.isclose(np.exp(np.mean(np.log(var))), 1.0, rtol=1e-8)
        assert np.allclose(A[idx].sum(0), 0.0, atol=1e-9)  # every draw sums to zero on the component
        others = np.setdiff1d(np.arange(n), idx)
        assert np.allclose(cov[np.ix_(idx, others)], 0.0, atol=1e-12)  # components are independent


@given(graphs())
@settings(deadline=None)
def test_icar_factor_is_the_generalised_inverse_and_does_not_depend_on_edge_order(g):
    n, pairs = g
    e = st.edge_array(n, pairs)
    Q = st.icar_precision(n, e)
    A = st.icar_factor(n, e, scaled=False)
    comp = st.components(n, e)
    island = np.bincount(comp)[comp] == 1
    expected = np.linalg.pinv(Q, hermitian=True)
    expected[np.ix_(island, island)] = np.eye(island.sum())
    assert np.allclose(A @ A.T, expected, atol=1e-8)
    rng = np.random.default_rng(0)
    shuffled = [tuple(p[::-1]) if rng.random() < 0.5 else tuple(p) for p in rng.permutation(e)] if len(e) else []
    assert np.array_equal(st.icar_factor(n, shuffled, scaled=False), A)


def test_scaling_factor_of_a_known_graph():
    # a path of two nodes: Q = [[1, -1], [-1, 1]], Q^- = Q / 4, marginal variances 1/4
    assert np.isclose(st.scaling_factor(st.icar_precision(2, [(0, 1)])), 0.25)


def test_walk_factors_null_spaces_and_increments():
    for n in (2, 5, 13):
        A = st.walk_factor(n, 1)
        assert A.shape == (n, n - 1)
        assert np.allclose(A.sum(0), 0.0)  # orthogonal to the constant: sums to zero
        assert np.allclose(A.T @ st.rw_precision(n, 1) @ A, np.eye(n - 1))  # increments N(0, 1)
        D = np.diff(np.eye(n), axis=0)
        assert np.allclose((D @ A) @ (D @ A).T, np.eye(n - 1))
    for n in (3, 6, 13):
        A = st.walk_factor(n, 2)
        assert A.shape == (n, n - 2)
        assert np.allclose(A.sum(0), 0.0)
        assert np.allclose(st.linear_trend(n) @ A, 0.0)  # the trend is the prior's own term
        assert np.allclose(A.T @ st.rw_precision(n, 2) @ A, np.eye(n - 2))
    Q1 = st.rw_precision(6, 1)
    assert np.allclose(Q1 @ np.ones(6), 0)
    Q2 = st.rw_precision(6, 2)
    assert np.allclose(Q2 @ np.arange(6.0), 0) and np.linalg.matrix_rank(Q2) == 4


def test_rw1_is_the_icar_of_a_path():
    n = 9
    assert np.allclose(st.rw_precision(n, 1), st.icar_precision(n, st.walk_edges(n)))


@given(st_.floats(-0.95, 0.95), st_.integers(2, 12))
@settings(deadline=None)
def test_ar1_matrix_gives_the_stationary_covariance(rho, n):
    M = st.ar1_matrix(n, rho)
    k = np.arange(n)
    expected = rho ** np.abs(k[:, None] - k[None, :]) / (1 - rho ** 2)
    assert np.allclose(M @ M.T, expected)
