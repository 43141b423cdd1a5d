"""Causal streaming anomaly detectors: z-score, EWMA, seasonal residual, GMM, combined.

One implementation serves the pipeline's `anomalies` asset (6-hour chunks of many series at
once, state carried between windows) and `neuropilot detect` (a whole CSV). Every statistic
at point t is built from points before t, and the state after a chunk is exactly what one
pass would hold, so prefix runs and chunked runs give identical verdicts.

Detectors (each a z-like score, larger = more anomalous):
- zscore:   (x - m) / s against an exponentially weighted baseline (half-life
            `baseline_halflife_minutes`); updates are winsorised at 4 s so one spike does not
            swallow the baseline, while a level shift that persists becomes the new normal.
- ewma:     the relative deviation of the short EWMA (span 20 points) from the baseline mean,
            |ewma - m| / |m|; scored as deviation / 0.1 so 0.3 (the seed's "medium") reads 3.
- seasonal: (x - slot mean) / slot std, with an exponentially weighted profile per
            `season_slots` slot of the day learnt from earlier days (24 h period).
- gmm:      the anomaly model's score (supplied by the caller; NaN when there is none).
The combined score is the largest; a point is an anomaly when it exceeds the threshold set
by `sensitivity` (see `DetectorConfig.threshold`), the deviation is material (> 5 % of the
baseline), the baseline has formed (cold start), and the series has not alarmed within
`suppress_minutes`.

Severity of a flagged point, by the seed's rule on its z-score and EWMA deviation:
critical z > 5 or dev > 0.5; high z > 4 or > 0.4; medium z > 3 or > 0.3; otherwise low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np
import pandas as pd

DETECTORS = ("zscore", "ewma", "seasonal", "gmm")
SEVERITY_LEVELS = ("none", "low", "medium", "high", "critical")
RECORD_COLUMNS = ["series", "ts", "value", "score", "severity", "detectors", "baseline", "deviation",
                  "score_zscore", "score_ewma", "score_seasonal", "score_gmm", "explanation"]


@dataclass(frozen=True)
class DetectorConfig:
    sensitivity: float = 0.92
    baseline_halflife_minutes: float = 240.0
    ewma_span_points: int = 20
    season_slots: int = 48
    season_halflife_days: float = 3.0
    warmup_minutes: float = 1440.0
    season_warmup_days: int = 3
    gmm_threshold: float = 6.0
    suppress_minutes: float = 60.0
    min_relative_deviation: float = 0.05
    winsor: float = 4.0

    @property
    def threshold(self) -> float:
        """Sensitivity s sets the tolerated false-alarm rate per point under normal behaviour,
        alpha = 10**(3*s - 6) (0.92 -> 1 in ~1,700 points per metric), and the threshold is the
        Gaussian z with that upper-tail probability: 0.92 -> 3.25, 0.99 -> 3.10, 0.5 -> 4.0."""
        alpha = 10 ** (3 * self.sensitivity - 6)
        return NormalDist().inv_cdf(1 - alpha)


def _alpha(step_minutes: float, halflife_minutes: float) -> float:
    return 1.0 - math.exp(-math.log(2.0) * step_minutes / halflife_minutes)


def new_state(n_series: int, config: DetectorConfig) -> dict[str, np.ndarray]:
    nan = np.full(n_series, np.nan)
    return {
        "count": np.zeros(n_series), "mean": nan.copy(), "var": np.zeros(n_series), "ewma": nan.copy(),
        "since_alarm": np.full(n_series, np.inf), "last_ts": np.full(n_series, np.nan),
        "slot_mean": np.full((n_series, config.season_slots), np.nan),
        "slot_var": np.zeros((n_series, config.season_slots)),
        "slot_days": np.zeros((n_series, config.season_slots)),
        "slot_last_day": np.full((n_series, config.season_slots), -1.0),
    }


def align_state(state: dict[str, np.ndarray] | None, old_ids: Sequence[str] | None, new_ids: Sequence[str],
                config: DetectorConfig) -> dict[str, np.ndarray]:
    """Carry state across a change in the set of series (a service added or removed)."""
    fresh = new_state(len(new_ids), config)
    if state is None or old_ids is None:
        return fresh
    index = {sid: i for i, sid in enumerate(old_ids)}
    for j, sid in enumerate(new_ids):
        i = index.get(sid)
        if i is not None:
            for key in fresh:
                fresh[key][j] = state[key][i]
    return fresh


@dataclass
class DetectionResult:
    values: np.ndarray
    score: np.ndarray
    is_anomaly: np.ndarray
    severity: np.ndarray  # int index into SEVERITY_LEVELS
    baseline: np.ndarray
    std: np.ndarray
    ewma_dev: np.ndarray
    seasonal_expected: np.ndarray
    scores: dict[str, np.ndarray]


def _severity(z: np.ndarray, dev: np.ndarray) -> np.ndarray:
    level = np.ones_like(z, dtype=np.int8)
    for lvl, (zt, dt) in zip((2, 3, 4), ((3, 0.3), (4, 0.4), (5, 0.5))):
        level = np.where((z > zt) | (dev > dt), lvl, level)
    return level


def detect_chunk(values: np.ndarray, timestamps: Sequence, state: dict[str, np.ndarray] | None,
                 config: DetectorConfig = DetectorConfig(), gmm_score: np.ndarray | None = None,
                 ) -> tuple[DetectionResult, dict[str, np.ndarray]]:
    """Score `values[n_series, n_points]` (NaN = missing) observed at `timestamps`."""
    x = np.atleast_2d(np.asarray(values, dtype=float))
    n_series, n = x.shape
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
    minutes = ts.as_unit("s").asi8.astype(float) / 60.0 if n else np.empty(0)
    st = {k: v.copy() for k, v in (state or new_state(n_series, config)).items()}
    thr = config.threshold
    a_short = 2.0 / (config.ewma_span_points + 1.0)
    slot_width = 1440.0 / config.season_slots
    gmm = np.full_like(x, np.nan) if gmm_score is None else np.asarray(gmm_score, dtype=float)
    out = {k: np.full_like(x, np.nan) for k in ("zscore", "ewma", "seasonal", "gmm", "score", "baseline", "std",
                                                 "ewma_dev", "seasonal_expected")}
    flag = np.zeros_like(x, dtype=bool)
    sev = np.zeros_like(x, dtype=np.int8)
    rows = np.arange(n_series)
    for t in range(n):
        v = x[:, t]
        now = minutes[t]
        ok = np.isfinite(v)
        step = np.where(np.isfinite(st["last_ts"]), np.maximum(now - st["last_ts"], 1.0), 1.0)
        a_long = 1.0 - np.exp(-math.log(2.0) * step / config.baseline_halflife_minutes)
        mean, var = st["mean"], st["var"]
        scale = np.abs(mean)
        std = np.maximum(np.sqrt(var), np.maximum(config.min_relative_deviation * scale / 2.0, 1e-9))
        formed = st["count"] * 1.0 >= 1  # refined below with time-based warm-up
        z = np.where(ok & np.isfinite(mean), np.abs(v - mean) / std, np.nan)
        dev = np.where(ok & np.isfinite(st["ewma"]) & (scale > 1e-12), np.abs(st["ewma"] - mean) / np.maximum(scale, 1e-12), np.nan)
        slot = int((now % 1440.0) // slot_width)
        s_mean, s_var, s_days = st["slot_mean"][:, slot], st["slot_var"][:, slot], st["slot_days"][:, slot]
        # A profile learnt from a few days is noisy: its spread is never taken below a quarter of the
        # series' overall spread.
        s_std = np.maximum(np.maximum(np.sqrt(s_var), 0.25 * std),
                           np.maximum(config.min_relative_deviation * np.abs(s_mean) / 2.0, 1e-9))
        seasonal = np.where(ok & (s_days >= config.season_warmup_days), np.abs(v - s_mean) / s_std, np.nan)
        g = gmm[:, t]
        ewma_score = dev / 0.1
        has_season = np.isfinite(seasonal)
        # With a seasonal profile, the daily cycle is explained: a point must stand out from its
        # time of day, and also from the recent baseline (so a level shift stops alarming once
        # the baseline has absorbed it). Without one, the recent baseline decides alone.
        recent = z > 0.5 * thr
        core = np.where(has_season, np.where(recent, seasonal, np.fmin(z, seasonal)), z)
        trend = np.where(has_season, np.fmin(ewma_score, seasonal), np.where(recent, ewma_score, np.fmin(ewma_score, z)))
        combined = np.fmax(np.fmax(core, trend), g)
        formed = st["count"] * np.nanmedian(step) >= config.warmup_minutes
        material = ok & (np.abs(v - mean) > config.min_relative_deviation * scale)
        fire = formed & material & np.isfinite(combined) & (combined > thr) & (st["since_alarm"] >= config.suppress_minutes)
        out["zscore"][:, t], out["ewma"][:, t], out["seasonal"][:, t], out["gmm"][:, t] = z, ewma_score, seasonal, g
        out["score"][:, t], out["baseline"][:, t], out["std"][:, t] = combined, mean, std
        out["ewma_dev"][:, t], out["seasonal_expected"][:, t] = dev, s_mean
        flag[:, t] = fire
        sev[:, t] = np.where(fire, _severity(np.nan_to_num(np.fmax(core, g)), np.nan_to_num(np.where(trend > thr, dev, 0.0))), 0)
        # ---- update state with the observed point (winsorised) ----
        first = ok & ~np.isfinite(mean)
        d = np.clip(v - mean, -config.winsor * std, config.winsor * std)
        upd = ok & ~first
        new_mean = np.where(upd, mean + a_long * d, np.where(first, v, mean))
        new_var = np.where(upd, (1 - a_long) * (var + a_long * d * d), var)
        st["mean"], st["var"] = new_mean, new_var
        st["ewma"] = np.where(ok, np.where(np.isfinite(st["ewma"]), st["ewma"] + a_short * (v - st["ewma"]), v), st["ewma"])
        st["count"] = st["count"] + ok
        st["since_alarm"] = np.where(fire, 0.0, st["since_alarm"] + np.where(ok, step, 0.0))
        st["last_ts"] = np.where(ok, now, st["last_ts"])
        day = now // 1440.0
        new_day = ok & (st["slot_last_day"][:, slot] != day)
        # Half-life in days of this slot's observations (a slot sees slot_width/step points a day).
        a_season = 1.0 - np.exp(-math.log(2.0) * step / (config.season_halflife_days * slot_width))
        sd = np.where(np.isfinite(s_mean), np.clip(v - s_mean, -config.winsor * s_std, config.winsor * s_std), 0.0)
        seen = ok & np.isfinite(s_mean)
        st["slot_mean"][:, slot] = np.where(seen, s_mean + a_season * sd, np.where(ok, v, s_mean))
        st["slot_var"][:, slot] = np.where(seen, (1 - a_season) * (s_var + a_season * sd * sd), s_var)
        st["slot_days"][:, slot] = s_days + new_day
        st["slot_last_day"][:, slot] = np.where(ok, day, st["slot_last_day"][:, slot])
    result = DetectionResult(x, out["score"], flag, sev, out["baseline"], out["std"], out["ewma_dev"],
                             out["seasonal_expected"], {k: out[k] for k in DETECTORS})
    return result, st


def _explain(result: DetectionResult, i: int, t: int, thr: float) -> tuple[list[str], str]:
    value = result.values[i, t]
    parts, fired = [], []
    base, dev = result.baseline[i, t], result.ewma_dev[i, t]
    for name in DETECTORS:
        s = result.scores[name][i, t]
        if not np.isfinite(s) or s <= thr:
            continue
        fired.append(name)
        if name == "zscore":
            parts.append(f"zscore {s:.1f}: value {value:.4g} vs baseline {base:.4g} ± {result.std[i, t]:.3g}")
        elif name == "ewma":
            parts.append(f"ewma: short-term mean deviates {dev:.0%} from baseline {base:.4g}")
        elif name == "seasonal":
            parts.append(f"seasonal {s:.1f}: value {value:.4g} vs usual {result.seasonal_expected[i, t]:.4g} at this time of day")
        else:
            parts.append(f"gmm {s:.1f}: unusual combination of this service's metrics")
    return fired, "; ".join(parts)


def anomaly_records(result: DetectionResult, series_ids: Sequence[str], timestamps: Sequence,
                    config: DetectorConfig = DetectorConfig()) -> list[dict[str, Any]]:
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
    records = []
    for i, t in zip(*np.nonzero(result.is_anomaly)):
        fired, text = _explain(result, i, t, config.threshold)
        records.append({
            "series": series_ids[i], "ts": ts[t], "value": float(result.values[i, t]), "score": float(result.score[i, t]),
            "severity": SEVERITY_LEVELS[int(result.severity[i, t])], "detectors": ",".join(fired),
            "baseline": float(result.baseline[i, t]), "deviation": float(result.values[i, t] - result.baseline[i, t]),
            **{f"score_{k}": float(result.scores[k][i, t]) for k in DETECTORS}, "explanation": text,
        })
    return records


def joint_alarms(gmm_score: np.ndarray, series_ids: Sequence[str], timestamps: Sequence,
                 since_alarm: np.ndarray | None, config: DetectorConfig = DetectorConfig(),
                 ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Alarms from the anomaly model's joint score (one series per service, not per metric):
    score > gmm_threshold, suppressed like the per-metric detectors. Severity by score:
    > 10 critical, > 8 high, > 6 medium. Returns records and the carried suppression state."""
    g = np.atleast_2d(np.asarray(gmm_score, dtype=float))
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
    since = np.full(g.shape[0], np.inf) if since_alarm is None else np.asarray(since_alarm, dtype=float).copy()
    records = []
    for t in range(g.shape[1]):
        fire = np.isfinite(g[:, t]) & (g[:, t] > config.gmm_threshold) & (since >= config.suppress_minutes)
        for i in np.flatnonzero(fire):
            s = float(g[i, t])
            severity = "critical" if s > 10 else "high" if s > 8 else "medium"
            records.append({
                "series": series_ids[i], "ts": ts[t], "value": s, "score": s, "severity": severity, "detectors": "gmm",
                "baseline": float(config.gmm_threshold), "deviation": s - config.gmm_threshold,
                "score_zscore": np.nan, "score_ewma": np.nan, "score_seasonal": np.nan, "score_gmm": s,
                "explanation": f"gmm {s:.1f}: this combination of the service's metrics is unlike the last day's "
                               f"(threshold {config.gmm_threshold:g})",
            })
        since = np.where(fire, 0.0, since + 1.0)
    return records, since


# ---- single series: `neuropilot detect` -----------------------------------------------------

def _guess_columns(df: pd.DataFrame, timestamp_col: str | None, value_col: str | None) -> tuple[str, str]:
    if timestamp_col is None:
        candidates = [c for c in df.columns if any(k in c.lower() for k in ("time", "date", "ts"))]
        timestamp_col = candidates[0] if candidates else df.columns[0]
    if value_col is None:
        numeric = [c for c in df.columns if c != timestamp_col and pd.api.types.is_numeric_dtype(df[c])]
        if not numeric:
            raise ValueError(f"no numeric value column found among {list(df.columns)}; pass --value-column")
        value_col = numeric[0]
    for c in (timestamp_col, value_col):
        if c not in df.columns:
            raise ValueError(f"column {c!r} not in the input (columns: {list(df.columns)})")
    return timestamp_col, value_col


def detect_dataframe(df: pd.DataFrame, timestamp_col: str | None = None, value_col: str | None = None,
                     config: DetectorConfig = DetectorConfig()) -> pd.DataFrame:
    tcol, vcol = _guess_columns(df, timestamp_col, value_col)
    ts = pd.to_datetime(df[tcol], utc=True, errors="coerce")
    if ts.isna().any():
        bad = int(ts.isna().idxmax())
        raise ValueError(f"row {bad}: timestamp {df[tcol].iloc[bad]!r} in column {tcol!r} cannot be parsed")
    if not ts.is_monotonic_increasing:
        raise ValueError(f"timestamps in column {tcol!r} are not in increasing order; sort the file first")
    values = pd.to_numeric(df[vcol], errors="coerce").to_numpy(dtype=float)
    result, _ = detect_chunk(values[None, :], ts, None, config)
    out = df.copy()
    out["score"] = result.score[0]
    out["is_anomaly"] = result.is_anomaly[0]
    out["severity"] = [SEVERITY_LEVELS[s] for s in result.severity[0]]
    for k in DETECTORS:
        out[f"score_{k}"] = result.scores[k][0]
    return out


def detect_csv(input_path: str | Path, output_path: str | Path, timestamp_col: str | None = None,
               value_col: str | None = None, config: DetectorConfig = DetectorConfig()) -> dict[str, Any]:
    from .atomic import atomic_write_text

    df = pd.read_csv(input_path)
    out = detect_dataframe(df, timestamp_col, value_col, config)
    atomic_write_text(output_path, out.to_csv(index=False), mode=0o644)
    return {"rows": len(out), "anomalies": int(out["is_anomaly"].sum()),
            "by_severity": out.loc[out["is_anomaly"], "severity"].value_counts().to_dict(), "output": str(output_path)}
