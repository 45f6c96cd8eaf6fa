"""mrp batch without sampling: variants (validation, overrides), the stacking mixture, the
batch table, the run keys that let a rerun skip current runs, scheduler arguments, and the
wording of lopsided stacking weights in `mrp compare`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mrp_formula.cli import main
from mrp_formula.commands import batch as b
from mrp_formula.commands.compare import _messages
from mrp_formula.commands.scheduler import Scheduler, check_address
from mrp_formula.errors import SpecError, UsageError
from mrp_formula.spec.tree import apply_overrides, load_spec, toml_value, variant_overrides


def _cli(capsys, *args) -> tuple[int, str, str]:
    """The command line in this process (a subprocess would pay the imports again): exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err

BASE = """
name = "ab"
[data]
source = "clicks.csv"
[model]
formula = "clicked ~ treatment + (1 | gender)"
family = "bernoulli"
[population.margins]
gender = { female = 0.5, male = 0.5 }
[estimands.click_rate]
at = { treatment = ["control", "treatment"] }
"""


def _spec(write, extra: str, name="ab.toml"):
    return write(name, textwrap.dedent(BASE).lstrip() + textwrap.dedent(extra))


def test_variants_become_set_overrides(write):
    path = _spec(write, """
        [variants.tight]
        "model.priors.treatment" = "Normal(0, 0.2)"
        "fit.draws" = 200
        [variants.other_data]
        "data.source" = "sub/other.csv"
        """)
    loaded = load_spec(path)
    assert list(loaded.spec.variants) == ["tight", "other_data"]
    sets = variant_overrides(loaded, "tight")
    assert sets == ('model.priors.treatment="Normal(0, 0.2)"', "fit.draws=200")
    v = load_spec(path, sets).spec
    assert str(v.model.priors["treatment"]) == "Normal(mu=0.0, sigma=0.2)" and v.fit.draws == 200
    # a path in a variant is relative to the spec file, like the spec's own paths
    (data,) = variant_overrides(loaded, "other_data")
    assert data == f'data.source="{(path.parent / "sub" / "other.csv").resolve()}"'
    with pytest.raises(UsageError, match="no variant 'tigth'") as exc:
        variant_overrides(loaded, "tigth")
    assert "did you mean 'tight'" in exc.value.problems[0].hint


def test_variant_mistakes_name_the_file_line_and_key(write):
    path = _spec(write, """
        [variants.typo]
        "model.formla" = "clicked ~ treatment"
        [variants.negative]
        "fit.draws" = -3
        [variants.base]
        "fit.draws" = 3
        [variants.recursive]
        "variants.x" = 1
        [variants.badformula]
        "model.formula" = "clicked ~ treatment +"
        """)
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    problems = {p.key.split(" ")[0]: p for p in exc.value.problems}
    typo = problems['variants.typo."model.formla"']
    assert typo.line == 13 and typo.file == str(path) and "did you mean 'formula'" in typo.hint
    assert problems['variants.negative."fit.draws"'].line == 15
    assert "reserved" in problems["variants.base"].message
    assert problems['variants.recursive."variants.x"'].line == 19
    assert any(p.line == 21 for p in exc.value.problems)  # the formula's own parse error, at its line
    assert exc.value.exit_code == 3


def test_cli_check_reports_variant_problems(write, capsys):
    path = _spec(write, """
        [variants.typo]
        "fit.drawz" = 100
        """)
    code, _, err = _cli(capsys, "check", str(path))
    assert code == 3
    assert f"{path}:13" in err and "did you mean 'draws'" in err


VALUES = st.recursive(
    st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
              st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("abcxyz_", min_size=1, max_size=4),
                                                                  inner, max_size=3),
    max_leaves=6)


@given(VALUES)
def test_toml_value_reads_back_as_the_same_value(value):
    raw, _ = apply_overrides({}, [f"k={toml_value(value)}"])
    assert raw["k"] == value


@given(st.lists(st.floats(0.01, 1), min_size=2, max_size=4), st.integers(0, 2**31 - 1))
def test_stack_draws_is_a_per_draw_mixture_fixed_by_the_seed(weights, seed):
    runs = [np.full((3, 400), float(i)) + np.arange(3)[:, None] * 10 for i in range(len(weights))]
    mixed = b.stack_draws(runs, weights, seed)
    again = b.stack_draws(runs, weights, seed)
    np.testing.assert_array_equal(mixed, again)
    # every draw comes from one run for all rows at once (the rows keep their joint draws)
    picked = mixed[0]
    np.testing.assert_array_equal(mixed[1], picked + 10)
    np.testing.assert_array_equal(mixed[2], picked + 20)


def test_stack_draws_follows_the_weights():
    runs = [np.zeros((1, 20000)), np.ones((1, 20000))]
    share = b.stack_draws(runs, [0.3, 0.7], seed=1).mean()
    assert abs(share - 0.7) < 4 * np.sqrt(0.7 * 0.3 / 20000)
    np.testing.assert_array_equal(b.stack_draws(runs, [1.0, 0.0], seed=1), runs[0])


def _draws(folder, shift, n=50):
    folder.mkdir()
    rows = []
    for g in ("a", "b"):
        for c in range(2):
            for d in range(n):
                rows.append({"chain": c, "draw": d, "estimand": "rate", "grp": g, "value": shift + d / n})
    pd.DataFrame(rows).sample(frac=1, random_state=3).to_parquet(folder / "estimand_draws.parquet")
    pd.DataFrame({"estimand": ["rate", "rate"], "grp": ["a", "b"], "scale": [None, None],
                  "mean": [0, 0]}).to_csv(folder / "estimands.csv", index=False)


def test_stack_estimands_reads_the_runs_draws_in_any_row_order(tmp_path):
    _draws(tmp_path / "one", 0.0)
    _draws(tmp_path / "two", 100.0)
    rows, note = b.stack_estimands([tmp_path / "one", tmp_path / "two"], [1.0, 0.0], seed=3, ci_prob=0.9,
                                   ci_kind="eti")
    assert note == "" and [r["grp"] for r in rows] == ["a", "b"]
    assert rows[0]["mean"] == pytest.approx(np.mean(np.arange(50) / 50))
    mixed, _ = b.stack_estimands([tmp_path / "one", tmp_path / "two"], [0.5, 0.5], seed=3, ci_prob=0.9,
                                 ci_kind="eti")
    assert 20 < mixed[0]["mean"] < 80  # about half the draws from each


def test_batch_table_puts_failures_and_estimands_in_one_table():
    ok = b.RunRecord(index=0, spec="a.toml", variant="base", run="a", status="ok", exit_code=0, verdict="pass",
                     rows=({"estimand": "rate", "grp": "x", "mean": 0.5, "lower": 0.4, "upper": 0.6},),
                     group_columns=("grp",))
    bad = b.RunRecord(index=1, spec="b.toml", variant="base", run="b", status="failed", exit_code=4,
                      error="b.toml:3: data.source: file not found")
    t = b.batch_table([ok, bad], [])
    assert list(t.columns[:7]) == ["spec", "variant", "run", "status", "exit_code", "error", "estimand"]
    assert t.loc[0, "mean"] == 0.5 and t.loc[0, "grp"] == "x"
    assert t.loc[1, "status"] == "failed" and t.loc[1, "exit_code"] == 4 and "not found" in t.loc[1, "error"]


def test_run_key_changes_with_the_data_and_overrides_not_with_other_variants(write):
    path = _spec(write, """
        [variants.tight]
        "fit.draws" = 200
        """)
    (path.parent / "clicks.csv").write_text("clicked,treatment,gender\n1,control,female\n")
    loaded = load_spec(path)
    key = b.run_key(loaded, ())
    assert key == b.run_key(load_spec(path), ())
    assert key != b.run_key(loaded, ("fit.draws=200",))
    path.write_text(path.read_text().replace('"fit.draws" = 200', '"fit.draws" = 300'))
    assert b.run_key(load_spec(path), ()) == key  # another variant's edit leaves the base current
    (path.parent / "clicks.csv").write_text("clicked,treatment,gender\n0,control,female\n")
    assert b.run_key(load_spec(path), ()) != key


def test_plan_runs_one_task_per_variant_and_a_row_per_unloadable_spec(write, tmp_path):
    good = _spec(write, """
        [variants.tight]
        "fit.draws" = 200
        """)
    broken = write("broken.toml", 'name = "broken"\n[data\n')
    files = b.spec_files([good, broken])
    tasks, failed, keys = b.plan_runs(files, tmp_path / "out", ("fit.chains=2",), strict=False, refit=False)
    assert [(t.variant, t.out.rsplit("/", 1)[-1]) for t in tasks] == [("base", "ab"), ("tight", "ab.tight")]
    assert tasks[1].overrides == ("fit.draws=200", "fit.chains=2")  # the user's --set last: it wins
    assert len(failed) == 1 and failed[0].exit_code == 3 and "TOML syntax" in failed[0].error
    assert len(set(keys.values())) == 2


def test_batch_refuses_a_folder_it_did_not_write(tmp_path, write):
    path = _spec(write, "")
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="no batch wrote"):
        b.batch([path], out=out)
    assert (out / "notes.txt").read_text() == "mine"


def test_scheduler_arguments_are_checked():
    assert check_address("tcp://127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    for bad in ("127.0.0.1:8786", "tcp://127.0.0.1:abc", "tcp://127.0.0.1:99999", "tcp://127.0.0.1:0"):
        with pytest.raises(UsageError, match="PROTOCOL://HOST:PORT"):  # a bad port crashed the client
            check_address(bad)
    with pytest.raises(UsageError, match="one of them"):
        Scheduler(workers=2, address="tcp://127.0.0.1:8786")


@pytest.mark.slow  # starts worker processes (seconds), though it does not sample
def test_each_worker_process_gets_its_own_compile_directory(tmp_path):
    code = ("import os, sys, time; from mrp_formula.commands.scheduler import worker_compiledir; "
            "d = worker_compiledir(); import pytensor; print(d, pytensor.config.base_compiledir, flush=True, file=sys.__stdout__); "
            "time.sleep(float(sys.argv[1]))")
    env = {**__import__("os").environ, "MRP_COMPILE_ROOT": str(tmp_path)}
    first = subprocess.Popen([sys.executable, "-c", code, "4"], stdout=subprocess.PIPE, text=True, env=env)
    line1 = first.stdout.readline().split()
    second = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True, env=env)
    first.wait()
    line2 = second.stdout.split()
    assert line1[0] == line1[1] and line2[0] == line2[1]  # pytensor compiles where it was told
    assert line1[0] != line2[0]  # the first still held its slot: the second took another
    third = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True, env=env)
    assert third.stdout.split()[0] == line1[0]  # a slot is reused once its process has ended


def _table(weights, elpd):
    return pd.DataFrame({"model": ["a", "b"], "elpd_diff": [0.0, elpd], "diff_se": [0.0, 0.4],
                         "weight": weights, "n_high_k": [0, 0], "divergences": [0, 0], "n_loo": [400, 400],
                         "pareto_k_max": [0.1, 0.1], "good_k": [0.7, 0.7]})


def test_compare_explains_a_weight_near_zero_beside_equal_predictions():
    _, notes = _messages(_table([1.0, 2.5e-16], -0.3), "row", 400, 400)
    assert "predict about equally well" in notes[0]
    assert "not a verdict that b predicts worse" in notes[0] and "2.5e-16" in notes[0]
    _, plain = _messages(_table([0.6, 0.4], -0.3), "row", 400, 400)
    assert "stacking weight" not in plain[0]  # unsurprising weights need no explanation
    _, clear = _messages(_table([1.0, 0.0], -30.0), "row", 400, 400)
    assert "predicts clearly better" in clear[0] and "stacking weight" not in clear[0]


def test_the_documented_variants_pass_mrp_check(tmp_path):
    """docs/spec-language.md's variants example: the spec and each variant pass `mrp check`."""
    import re
    from pathlib import Path

    import mrp_formula
    from generate import simulate

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "spec-language.md").read_text()
    example = next(e for e in re.findall(r"```toml\n(.*?)```", text, re.S) if "[variants." in e)
    (tmp_path / "docs").mkdir()
    (tmp_path / "examples" / "ab_click").mkdir(parents=True)
    simulate().to_csv(tmp_path / "examples" / "ab_click" / "clicks.csv", index=False)
    (tmp_path / "examples" / "mrp_primer").symlink_to(root / "examples" / "mrp_primer", target_is_directory=True)
    path = tmp_path / "docs" / "primer-variants.toml"
    path.write_text(example)
    loaded = load_spec(path)
    assert set(loaded.spec.variants) == {"no_state_predictors", "tight_state"}
    for name in loaded.spec.variants:
        plan = mrp_formula.check(path, overrides=variant_overrides(loaded, name))
        assert plan.tables.sample.shape[0] > 0
    tight = load_spec(path, variant_overrides(loaded, "tight_state")).spec
    assert str(tight.model.priors["1|state"]).startswith("Normal(mu=0")


def test_cli_batch_of_unloadable_specs_needs_no_cluster_and_exits_with_the_worst_code(write, tmp_path, capsys):
    broken = write("broken.toml", 'name = "broken"\n[data\n')
    typo = _spec(write, "[fit]\ndrawz = 3\n", name="typo.toml")
    out = tmp_path / "out"
    code, stdout, err = _cli(capsys, "batch", str(broken), str(typo), "--out", str(out), "--json")
    assert code == 3, err
    doc = json.loads(stdout)
    assert doc["ok"] is False and doc["exit_code"] == 3
    rows = {r["spec"].rsplit("/", 1)[-1]: r for r in doc["batch"]}
    assert rows["typo.toml"]["status"] == "failed" and "did you mean 'draws'" in rows["typo.toml"]["error"]
    assert "TOML syntax" in rows["broken.toml"]["error"]
    assert (out / "batch.csv").is_file() and (out / "index.html").is_file()
    assert "did you mean" in (out / "index.html").read_text()


def test_cli_batch_refuses_workers_with_a_scheduler(write, tmp_path, capsys):
    path = _spec(write, "")
    code, _, err = _cli(capsys, "batch", str(path), "--out", str(tmp_path / "o"), "--workers", "2", "--scheduler",
                        "tcp://127.0.0.1:1")
    assert code == 2 and "--scheduler" in err


def test_a_task_carries_the_spec_text_the_worker_needs_no_spec_file(ab_dir, tmp_path):
    """The worker runs the text the client read, with paths relative to the spec's folder; the
    file itself may be gone (or another version) on the worker."""
    spec = ab_dir / "ab.toml"
    text = spec.read_text().replace("draws = 300", "draws = 20").replace("tune = 300", "tune = 20") \
        + "[report]\nplots = false\n"
    spec.unlink()
    loaded = load_spec(spec, text=text)
    assert loaded.spec.fit.draws == 20 and loaded.text == text
    assert loaded.spec.data.source == str(ab_dir / "clicks.csv")  # relative to the spec's folder
