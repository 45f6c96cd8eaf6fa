"""A run folder, read back: :class:`RunView` holds what the report and ``mrp diff`` show.

``RunView.from_folder(path)`` is the one loader: ``pipeline.run`` calls it on the folder it has
just staged, ``mrp report`` and ``mrp diff`` on a finished one. It needs ``manifest.json`` and
``estimands.csv``; the draws, the PPC table and ``spec.toml`` are read when present (a page
without them says what is missing). Nothing here imports the fitting stack.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula.errors import Problem, UsageError

REQUIRED = ("manifest.json", "estimands.csv")
# report thresholds when the spec does not say (mrp_formula.spec.tree.ReportSpec's defaults)
DEFAULT_THRESHOLDS = {"rhat_max": 1.01, "ess_min": 400.0, "divergences_max": 0}
NULL = {"difference": 0.0, "ratio": 1.0, "odds_ratio": 1.0}


def _num(v) -> float | None:
    """A finite float, or None."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def text(v) -> str:
    """A label as text: missing -> ''; 1.0 -> '1' (CSV round trips turn levels into floats)."""
    from mrp_formula.output.plots import _text

    return _text(v)


def text_column(column: pd.Series) -> pd.Series:
    """`text` of every value of a column, computed once per distinct value (a draws table repeats
    a few labels hundreds of thousands of times)."""
    codes, distinct = pd.factorize(column, use_na_sentinel=False)
    labels = np.array([text(v) for v in distinct], dtype=object)
    return pd.Series(labels[codes], index=column.index, name=column.name, dtype=object)


@dataclass(frozen=True)
class DiagnosticsSummary:
    """The convergence numbers of the manifest with the thresholds they were judged by."""

    divergences: int | None
    max_rhat: float | None
    min_ess_bulk: float | None
    min_ess_tail: float | None
    estimand_max_rhat: float | None
    estimand_min_ess_bulk: float | None
    bfmi_min: float | None
    treedepth_hits: int | None
    worst_parameters: dict[str, tuple[float | None, float | None]]
    failed: tuple[str, ...]  # the checks that fail the run under --strict
    rhat_max: float
    ess_min: float
    divergences_max: int
    chains: int
    draws: int

    @classmethod
    def from_manifest(cls, manifest: dict, spec: dict) -> "DiagnosticsSummary":
        d = manifest.get("diagnostics") or {}
        report = spec.get("report") if isinstance(spec.get("report"), dict) else {}
        th = {k: report.get(k, v) for k, v in DEFAULT_THRESHOLDS.items()}
        sampler = manifest.get("sampler") or {}

        def count(v):
            return None if v is None else int(v)

        worst = {str(k): (_num(v[0]), _num(v[1])) for k, v in (d.get("worst_parameters") or {}).items()
                 if isinstance(v, (list, tuple)) and len(v) == 2}
        return cls(divergences=count(d.get("divergences")), max_rhat=_num(d.get("max_rhat")),
                   min_ess_bulk=_num(d.get("min_ess_bulk")), min_ess_tail=_num(d.get("min_ess_tail")),
                   estimand_max_rhat=_num(d.get("estimand_max_rhat")),
                   estimand_min_ess_bulk=_num(d.get("estimand_min_ess_bulk")), bfmi_min=_num(d.get("bfmi_min")),
                   treedepth_hits=count(d.get("treedepth_hits")), worst_parameters=worst,
                   failed=tuple(str(f) for f in d.get("failed") or ()),
                   rhat_max=float(th["rhat_max"]), ess_min=float(th["ess_min"]),
                   divergences_max=int(th["divergences_max"]), chains=int(sampler.get("chains") or 0),
                   draws=int(sampler.get("draws") or 0))


@dataclass(frozen=True)
class RunView:
    """Everything a page about one run shows, read from its folder."""

    folder: Path
    manifest: dict
    estimands: pd.DataFrame  # estimands.csv; label columns as text ('' when missing)
    draws: pd.DataFrame | None  # estimand_draws.parquet (chain, draw, estimand, labels, value)
    ppc: pd.DataFrame | None  # ppc.csv
    spec_text: str  # spec.toml as copied into the run folder ('' when absent)
    spec: dict  # spec.toml parsed, with the run's --set overrides applied ({} when unreadable)
    notes: tuple[str, ...]  # run notes that are not warnings
    warnings: tuple[str, ...]  # what the run flagged as deserving attention
    diagnostics: DiagnosticsSummary
    written: str  # when the run folder was written (UTC, from manifest.json's time stamp)
    missing: tuple[str, ...] = field(default=())  # optional files the folder lacks or that could not be read
    calibration: pd.DataFrame | None = None  # calibration.csv, when the run was calibrated
    # the posterior in memory (``mrp run`` hands over the one it wrote): the trace figure then need
    # not read posterior.nc back (about 1 s on the primer); None: read from the folder when drawn
    posterior: object | None = None
    # where the folder is for its reader: a run writes its page into a staged folder that is then
    # renamed to this (None: where it was read)
    home: Path | None = None

    @property
    def place(self) -> Path:
        """The run folder as a reader finds it (see ``home``)."""
        return self.home if self.home is not None else self.folder

    @property
    def rewrite(self) -> str:
        """The command that writes the page again: ``mrp report`` and the folder, relative to the
        current folder when inside it (where the run was made), else absolute."""
        import shlex

        full = self.place.resolve()
        here = Path.cwd().resolve()
        shown = full.relative_to(here) if full.is_relative_to(here) and full != here else full
        return f"mrp report {shlex.quote(str(shown))}"

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_folder(cls, path: str | Path, *, draws: bool = True, posterior=None, home: Path | None = None) -> "RunView":
        """Read a run folder; a path that is not one raises :class:`UsageError` (exit 2) naming it.
        ``draws=False`` leaves the estimand draws unread (a comparison needs only the summary).
        ``posterior``: the DataTree the folder's posterior.nc holds, when the caller has it in memory.
        ``home``: where the folder will be for its reader (see the field)."""
        read_draws = draws
        folder = Path(path)
        if not folder.is_dir():
            what = "does not exist" if not folder.exists() else "is not a folder"
            raise UsageError(Problem(f"not a run folder: the path {what}", file=str(folder),
                                     hint="give a folder written by `mrp run` (runs/<name> by default)"))
        absent = [f for f in REQUIRED if not (folder / f).is_file()]
        if absent:
            raise UsageError(Problem(f"not a run folder: {' and '.join(absent)} missing", file=str(folder),
                                     hint="give a folder written by `mrp run` (it holds manifest.json and "
                                          "estimands.csv)"))
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(Problem(f"not a run folder: manifest.json cannot be read ({exc})",
                                     file=str(folder / "manifest.json"),
                                     hint="rerun `mrp run` to write the folder again")) from None
        if not isinstance(manifest, dict):
            raise UsageError(Problem("not a run folder: manifest.json is not a JSON object",
                                     file=str(folder / "manifest.json"), hint="rerun `mrp run`"))
        try:
            estimands = read_estimands(folder / "estimands.csv")
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise UsageError(Problem(f"not a run folder: estimands.csv cannot be read ({exc})",
                                     file=str(folder / "estimands.csv"), hint="rerun `mrp run`")) from None
        missing: list[str] = []
        draws = ppc = None
        if not read_draws:
            pass
        elif (folder / "estimand_draws.parquet").is_file():
            try:
                draws = pd.read_parquet(folder / "estimand_draws.parquet")
                for c in draws.columns:
                    if c not in ("chain", "draw", "value"):
                        draws[c] = text_column(draws[c])
            except Exception as exc:  # a damaged optional file costs its figures, not the page
                missing.append(f"estimand_draws.parquet ({type(exc).__name__})")
        else:
            missing.append("estimand_draws.parquet")
        if (folder / "ppc.csv").is_file():
            try:
                ppc = read_ppc(folder / "ppc.csv")
            except Exception as exc:
                missing.append(f"ppc.csv ({type(exc).__name__})")
        else:
            missing.append("ppc.csv")
        calibration = None
        if (folder / "calibration.csv").is_file():
            try:
                calibration = read_calibration(folder / "calibration.csv")
            except Exception as exc:
                missing.append(f"calibration.csv ({type(exc).__name__})")
        spec_text = ""
        spec: dict = {}
        if (folder / "spec.toml").is_file():
            spec_text = (folder / "spec.toml").read_text(encoding="utf-8", errors="replace")
            resolved = (manifest.get("spec") or {}).get("resolved")
            # the spec as the run used it (extends merged, --set applied); spec.toml is the file alone
            spec = resolved if isinstance(resolved, dict) else parse_spec(spec_text, overrides(manifest))
        else:
            missing.append("spec.toml")
        warnings_ = tuple(str(w) for w in manifest.get("warnings") or ())
        notes = tuple(str(n) for n in manifest.get("notes") or () if str(n) not in warnings_)
        stamp = datetime.fromtimestamp((folder / "manifest.json").stat().st_mtime, tz=timezone.utc)
        return cls(folder=folder, manifest=manifest, estimands=estimands, draws=draws, ppc=ppc,
                   spec_text=spec_text, spec=spec, notes=notes, warnings=warnings_,
                   diagnostics=DiagnosticsSummary.from_manifest(manifest, spec),
                   written=stamp.strftime("%Y-%m-%d %H:%M UTC"), missing=tuple(missing), calibration=calibration,
                   posterior=posterior, home=Path(home) if home is not None else None)

    # ------------------------------------------------------------------ what the spec says

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.spec.get("name") or self.folder.name)

    @property
    def description(self) -> str:
        return str(self.spec.get("description") or "")

    def _model(self) -> dict:
        m = self.spec.get("model")
        return m if isinstance(m, dict) else {}

    @property
    def formula(self) -> str:
        model = self.manifest.get("model") or {}
        return " ".join(str(model.get("formula") or self._model().get("formula") or "").split())

    @property
    def family(self) -> str:
        """The family as written in the spec (the manifest holds the fitted one: bernoulli fits as binomial)."""
        return str(self._model().get("family") or (self.manifest.get("model") or {}).get("family") or "")

    @property
    def response(self) -> str:
        return self.formula.split("~", 1)[0].strip() if "~" in self.formula else ""

    @property
    def ci_prob(self) -> float:
        v = _num(self.estimands["ci_prob"].iloc[0]) if "ci_prob" in self.estimands and len(self.estimands) else None
        return v if v is not None else 0.95

    @property
    def ci_kind(self) -> str:
        if "ci_kind" in self.estimands and len(self.estimands):
            return text(self.estimands["ci_kind"].iloc[0]) or "eti"
        return "eti"

    @property
    def ci_name(self) -> str:
        return f"{100 * self.ci_prob:.3g}% {self.ci_kind.upper()}"

    @property
    def label_columns(self) -> list[str]:
        """The columns naming a row besides ``estimand``: at, contrast and by variables, category."""
        return label_columns(self.estimands)

    @property
    def estimand_specs(self) -> dict[str, dict]:
        e = self.spec.get("estimands")
        return {str(k): v for k, v in e.items() if isinstance(v, dict)} if isinstance(e, dict) else {}

    @property
    def ropes(self) -> dict[str, tuple[float, float]]:
        out = {}
        for name, e in self.estimand_specs.items():
            rope = e.get("rope")
            if isinstance(rope, (list, tuple)) and len(rope) == 2 and all(_num(r) is not None for r in rope):
                out[name] = (float(rope[0]), float(rope[1]))
        return out

    @property
    def overrides(self) -> list[str]:
        return overrides(self.manifest)

    @property
    def extends(self) -> list[str]:
        """The spec files the run's spec extends (its spec.toml holds only its own keys)."""
        return [str(f) for f in (self.manifest.get("spec") or {}).get("extends") or ()]

    @property
    def resolved_text(self) -> str:
        """The spec as the run used it, as TOML ('' when the manifest does not have it)."""
        from mrp_formula.spec.tree import to_toml

        resolved = (self.manifest.get("spec") or {}).get("resolved")
        return to_toml(resolved) if isinstance(resolved, dict) else ""

    @property
    def by_columns(self) -> dict[str, list[str]]:
        """Per estimand, the label columns that vary across its rows (its breakdown)."""
        out = {}
        for est, sub in self.estimands.groupby("estimand", sort=False):
            out[str(est)] = [c for c in self.label_columns if sub[c].nunique() > 1]
        return out

    def rows_of(self, estimand: str) -> pd.DataFrame:
        return self.estimands[self.estimands["estimand"] == estimand]

    def draws_of(self, estimand: str) -> pd.DataFrame | None:
        if self.draws is None:
            return None
        return self.draws[self.draws["estimand"] == estimand]


def overrides(manifest: dict) -> list[str]:
    spec = manifest.get("spec") or {}
    return [str(o) for o in spec.get("overrides") or ()]


def label_columns(estimands: pd.DataFrame) -> list[str]:
    cols = list(estimands.columns)
    end = cols.index("scale") if "scale" in cols else 1
    return cols[1:end]


def read_estimands(path: Path) -> pd.DataFrame:
    """estimands.csv with its label columns as text (levels such as '01' stay as written)."""
    head = list(pd.read_csv(path, nrows=0).columns)
    if "estimand" not in head:
        raise ValueError("it has no 'estimand' column")
    end = head.index("scale") if "scale" in head else 1
    labels = head[: end + 1] + [c for c in ("ci_kind",) if c in head]
    df = pd.read_csv(path, dtype={c: str for c in labels}, keep_default_na=False,
                     na_values={c: [""] for c in head if c not in labels})
    for c in labels:
        df[c] = text_column(df[c])
    return df


def read_ppc(path: Path) -> pd.DataFrame:
    """ppc.csv with levels as written (a level 'NA' stays 'NA') and numbers as numbers."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for c in df.columns:
        if c == "inside":
            df[c] = df[c].str.lower().eq("true")
        elif c not in ("variable", "level", "category"):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def read_calibration(path: Path) -> pd.DataFrame:
    """calibration.csv with its first column (the levels) as written and numbers as numbers."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for c in df.columns[1:]:
        if c == "known_in_interval":
            df[c] = df[c].str.lower().eq("true")
        elif c not in ("ci_kind", "link"):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def parse_spec(spec_text: str, overrides_: list[str]) -> dict:
    """spec.toml as a dict with the --set overrides applied; {} when it cannot be parsed (a spec that
    ``extends`` another holds only its own keys: the page then falls back on the manifest)."""
    from mrp_formula.spec.tree import apply_overrides, tomllib

    try:
        raw = tomllib.loads(spec_text)
    except Exception:
        return {}
    try:
        raw, _ = apply_overrides(raw, overrides_)
    except Exception:
        pass
    return raw


def row_label(row, columns: list[str]) -> str:
    """'treatment = control', 'treatment vs control', 'state = AK, category 2'; '' for a whole-population row."""
    parts = []
    for c in columns:
        v = text(row.get(c)) if hasattr(row, "get") else text(row[c])
        if not v:
            continue
        if c == "category":
            parts.append(f"category {v}")
        elif " vs " in v:
            parts.append(v)
        else:
            parts.append(f"{c} = {v}")
    return ", ".join(parts)
