"""The over-time figure of estimands broken down by an ordered variable."""

import numpy as np
import pandas as pd

from mrp_formula.output.plots import figures


def _table(weeks, arms=("a",)):
    rows = []
    for arm in arms:
        for w in weeks:
            rows.append({"estimand": "share", "week": str(w), "arm": arm, "scale": None, "median": 0.5 + 0.01 * w,
                         "lower": 0.4, "upper": 0.6 + 0.01 * w, "p_above_null": np.nan, "p_in_rope": np.nan,
                         "raw": np.nan if w == 3 else 0.5, "weighted": np.nan})
    return pd.DataFrame(rows)


def test_drawn_along_the_order_for_an_ordered_variable_only():
    order = [str(w) for w in range(1, 11)]
    figs = figures(("over_time",), estimands=_table(range(10, 0, -1), arms=("a", "b")), ordered={"week": order})
    assert [name for name, _ in figs] == ["over_time.png"]
    ax = figs[0][1].axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    assert len(lines) == 2  # one per arm
    x, y = lines[0].get_data()
    assert list(x) == list(range(10)) and np.all(np.diff(y) > 0)  # in the walk's order, not the table's
    assert figures(("over_time",), estimands=_table(range(1, 5)), ordered={}) == []
    assert figures(("over_time",), estimands=_table(range(1, 5)), ordered={"age": ["1", "2"]}) == []


def test_the_report_reads_the_ordered_variables_from_the_manifest():
    from mrp_formula.output.report.document import ordered_variables

    manifest = {"model": {"structure": [
        {"variable": "week", "kind": "ar1", "levels": [1, 2, 10]},
        {"variable": "state", "kind": "bym2", "levels": ["AK", "AL"]}]}}
    assert ordered_variables(manifest) == {"week": ["1", "2", "10"]}
    assert ordered_variables({}) == {} and ordered_variables({"model": {}}) == {}
