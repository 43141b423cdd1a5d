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
- shape:    how far the last 2 hours (5-minute means) are from the nearest stretch of the past
            7 days, over the usual such distance (see `shape.py`): whether the metric has done
            this before. Missed samples and steps of up to an hour are filled in on straight
            lines (`shape_fill_minutes`), so the 2 hours are 2 hours of time.
- range:    how far the last hour's mean lies outside the lowest and highest 5-minute mean of
            the past 7 days up to 12 hours before the 6-hour block (`range_exclusion_minutes`),
            in widths of that range; 0 inside it. The level of a slow failure, which the
            baselines follow step by step, measured against the week before it began.
The statistical score is the largest of the first four. A point is an anomaly when the
baseline has formed (a day: cold start), the series' last alarm is behind it (one alarm per
incident: see below), and either
- the statistical score exceeds the threshold set by `sensitivity` (see
  `DetectorConfig.threshold`), the deviation is material (more than `min_relative_deviation`,
  20 %, of the baseline level) and the shape is new (`shape_gate`, 2x the usual distance): a
  spike the metric throws every few days is far from its baseline every time, but not new; or
- the shape alone is far from anything seen (`shape_alarm`, 3x) and the series has
  `shape_warmup_days` (3) behind it: a drop or slide the baselines follow, which the
  statistical detectors see late or never. (With a day or two behind it, every stretch looks
  new: the shape's cold start.); or
- the level is beyond its range by more than `range_margin` (10 %) of the range's width, and the
  series has `range_warmup_days` (7) behind it: a slide too slow for any 2 hours of it to stand
  out on a metric that swings a lot, which ends lower (or higher) than the metric has been all
  week. The exclusion lets a level shift become the new normal: by the next block but one,
  the shifted level is in the range;
and, whichever route, the shape does not recur: its last 2 hours do not correlate at
`recurrence_correlation` (0.8) or more with a stretch ending at the same time of day (within
`recurrence_tolerance_minutes`, an hour) on an earlier day of the lookback whose spread is at
least half of theirs and whose level is within one of its spreads (`shape.recurrence`). A daily
job's spike is taller on some days, which makes its raw shape new, but it is the same event; a
surge of the same shape at several times the job's usual size, or at a level the metric does
not hold at that hour, is not.
One alarm per incident: after an alarm the series is silent until either `suppress_minutes`
(a day) have passed, or `min_alarm_gap_minutes` (12 hours) have and it has been quiet for
`incident_quiet_minutes` (6 hours): no statistical candidate, no shape at the gate's
distance and no level beyond its range. A second outage in the afternoon, after the morning's
had cleared, pages again; the minutes of one outage, or a level shift the shape still finds
unusual, do not.
Spreads are never taken below `std_floor_fraction` (10 %) of the level, so a quiet series does
not alarm on a wiggle, nor below a series' `min_deviation` over the threshold (detect_chunk): a
series that sits at 0, such as an error rate, has no level to take 10 % of. A baseline's first
`baseline_startup_points` weigh equally and are not winsorised, so it starts with a spread. On the NAB subset (benchmarks/nab.py) the shape rule took the score from
44.1 to 67.4: fewer alarms on recurring spikes, and slow failures found; the recurrence
rule to 70.3 (70 false positives instead of 87: a daily spike of varying height had alarmed
nine times on one file); one alarm per incident instead of per day to 73.3 (27 of 29 windows:
a second incident 19 hours after the first, with 14 quiet hours between, had been silenced);
filling in missing buckets to 73.7 (69 false positives), and on the same files with 10 % of
samples missed or at hourly means from 66.9 and 59.0 to 68.0 and 67.3; the level's range to
75.1 (machine_temperature's last failure found 30 hours earlier, as it slid below the week's
range).

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
from numba import njit

from . import shape
from .traces import find_numbers, find_timestamps, read_table, require_two_columns

DETECTORS = ("zscore", "ewma", "seasonal", "gmm", "shape", "range")
SEVERITY_LEVELS = ("none", "low", "medium", "high", "critical")
RECORD_COLUMNS = ["series", "ts", "value", "score", "severity", "detectors", "baseline", "deviation",
                  "score_zscore", "score_ewma", "score_seasonal", "score_gmm", "score_shape", "score_range",
                  "explanation"]


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
    suppress_minutes: float = 1440.0
    incident_quiet_minutes: float = 360.0
    min_alarm_gap_minutes: float = 720.0
    min_relative_deviation: float = 0.2
    std_floor_fraction: float = 0.1
    winsor: float = 4.0
    # A baseline starts from the median and the median absolute deviation of its first
    # `baseline_startup_points`, or of as many (3 at least) as the first
    # `baseline_startup_minutes` hold; no z-score before. Started from one value with no
    # spread, winsorising at 4x a spread of ~0 held it near that value for hours; the median
    # keeps an outlier among the first points from inflating the spread.
    baseline_startup_points: int = 30
    baseline_startup_minutes: float = 360.0
    shape_bucket_minutes: float = 5.0
    shape_length: int = 24
    shape_lookback_days: float = 7.0
    shape_typical_halflife_days: float = 7.0
    shape_gate: float = 2.0
    shape_alarm: float = 3.0
    shape_warmup_days: float = 3.0
    # An alarm (on either route) whose shape repeats an earlier day's at the same time of day
    # (within the tolerance), at a comparable spread and level, is a recurring pattern
    # (shape.recurrence), and is dropped.
    recurrence_correlation: float = 0.8
    recurrence_tolerance_minutes: float = 60.0
    recurrence_max_scale: float = 2.0
    recurrence_max_shift: float = 1.0
    # Buckets missing between two points (a missed scrape, a 10-minute or hourly export) are
    # filled in on the straight line between them when the gap is at most this long, so a
    # shape always spans shape_length buckets of time; a longer gap is an outage, left as is.
    shape_fill_minutes: float = 60.0
    # The shape sums are recomputed from the buckets at every UTC 6-hour mark: the pipeline's
    # window length, so a window's state can be rebuilt from the raw metrics (shape.py).
    shape_recompute_minutes: float = 360.0
    # The level's range: the mean of the last `range_hour_minutes` against the lowest and highest
    # 5-minute bucket of the shape lookback, up to `range_exclusion_minutes` before the 6-hour
    # block (so a slide of a day is judged against the week before it, and a level shift is
    # the new normal by the next block but one). Beyond it by more than `range_margin` of its
    # width, the level alone raises the alarm, once the series has `range_warmup_days` behind it.
    range_hour_minutes: float = 60.0
    range_exclusion_minutes: float = 720.0
    range_margin: float = 0.1
    range_warmup_days: float = 7.0

    @property
    def shape_capacity(self) -> int:
        return shape.capacity(self.shape_bucket_minutes, self.shape_length, self.shape_lookback_days * 1440.0,
                              self.shape_recompute_minutes)

    @property
    def shape_fill_slots(self) -> int:
        """Missing buckets filled in at most (`shape_fill_minutes`)."""
        return int(self.shape_fill_minutes // self.shape_bucket_minutes)

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
        "count": np.zeros(n_series),
        # The first points of a series, from which its baseline starts (DetectorConfig); a state
        # stored before this key existed has counted past them.
        "startup_values": np.full((n_series, config.baseline_startup_points), np.nan), "mean": nan.copy(), "var": np.zeros(n_series), "ewma": nan.copy(),
        "since_alarm": np.full(n_series, np.inf), "last_ts": np.full(n_series, np.nan),
        # Minutes since the last unusual point (one alarm per incident, shape.verdicts). Zero, not
        # infinite, to start with: a state stored before this key existed has no evidence that
        # its last incident went quiet.
        "since_unusual": np.zeros(n_series),
        "first_ts": np.full(n_series, np.nan),
        "slot_mean": np.full((n_series, config.season_slots), np.nan),
        "slot_var": np.zeros((n_series, config.season_slots)),
        "slot_days": np.zeros((n_series, config.season_slots)),
        "slot_last_day": np.full((n_series, config.season_slots), -1.0),
        **shape.new_state(n_series, config.shape_capacity),
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
            # A key the state lacks stays fresh: the shape buckets a pipeline rebuilds rather than
            # stores, or a detector added since the state was written (which then starts cold).
            for key in fresh.keys() & state.keys():
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
    # Where a shape could raise an alarm (a statistical candidate's passing the gate, or any
    # reaching the shape-alone bar): its best correlation with the same time of an earlier day
    # (shape.recurrence); NaN elsewhere.
    recurrence: np.ndarray
    # The level (the last hour's mean of 5-minute buckets) and the lowest and highest bucket of
    # the week it is judged against (scores["range"]: how far outside, in widths of that range).
    level_hour: np.ndarray
    range_low: np.ndarray
    range_high: np.ndarray
    min_deviation: np.ndarray  # per series (detect_chunk)


def detect_chunk(values: np.ndarray, timestamps: Sequence, state: dict[str, np.ndarray] | None,
                 config: DetectorConfig = DetectorConfig(), gmm_score: np.ndarray | None = None,
                 copy_state: bool = True, min_deviation: float | Sequence[float] = 0.0,
                 ) -> tuple[DetectionResult, dict[str, np.ndarray]]:
    """Score `values[n_series, n_points]` (NaN = missing) observed at `timestamps`. The state
    passed in is left as it was, unless copy_state is False (a caller that drops it anyway
    saves copying the shape detector's buckets, ~90 kB a series).

    `min_deviation` (one for all series, or one per series) is the smallest change from the
    baseline, in the series' own unit, that is material whatever the baseline's level. A
    series that sits at 0 (an error rate) has a baseline of 0 and a spread near 0, so without
    it every blip is "material" (over 20 % of 0) and millions of standard deviations away.
    Spreads are then never taken below min_deviation / threshold: a change of min_deviation
    from a flat baseline reads as the alarm threshold."""
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(values, dtype=float)))
    n_series, n = x.shape
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
    minutes = ts.as_unit("s").asi8.astype(float) / 60.0 if n else np.empty(0)
    st = {k: v.copy() if copy_state else v for k, v in (state or new_state(n_series, config)).items()}
    min_dev = np.broadcast_to(np.asarray(min_deviation, dtype=float), (n_series,)).copy()
    if not (np.isfinite(min_dev) & (min_dev >= 0)).all():
        raise ValueError(f"min_deviation must be finite and >= 0, got {min_deviation!r}")
    gmm = np.full_like(x, np.nan) if gmm_score is None else np.ascontiguousarray(np.asarray(gmm_score, dtype=float))
    out = np.full((9, n_series, n), np.nan)
    stage = np.zeros((n_series, n), dtype=np.int8)  # 0 baseline forming, 1 formed, 2 statistical candidate
    steps = np.zeros((n_series, n))
    level = np.zeros((n_series, n), dtype=np.int8)
    # Whether the point is at least min_deviation from its baseline: the shape and range routes
    # alarm only there (always, when min_deviation is 0).
    significant = np.zeros((n_series, n), dtype=np.bool_)
    _kernel(x, minutes, gmm, config.threshold, config.baseline_halflife_minutes, 2.0 / (config.ewma_span_points + 1.0),
            1440.0 / config.season_slots, config.season_halflife_days, config.season_warmup_days,
            config.warmup_minutes, config.min_relative_deviation, config.std_floor_fraction,
            config.winsor, config.baseline_startup_points, config.baseline_startup_minutes, min_dev,
            st["startup_values"], st["count"], st["mean"], st["var"], st["ewma"], st["last_ts"], st["first_ts"],
            st["slot_mean"], st["slot_var"], st["slot_days"], st["slot_last_day"], out, stage, steps, level, significant)
    shape_score = np.full((n_series, n), np.nan)
    recurrence = np.full((n_series, n), np.nan)
    fire = np.zeros((n_series, n), dtype=np.bool_)
    sev = np.zeros((n_series, n), dtype=np.int8)
    beyond, range_low, range_high, level_hour = (np.full((n_series, n), np.nan) for _ in range(4))
    bucket = config.shape_bucket_minutes
    # The shape alone alarms only once its lookback holds shape_warmup_days of the series (cold start).
    age = minutes[None, :] - st["first_ts"][:, None]
    shape_formed = age >= config.shape_warmup_days * 1440.0
    range_formed = age >= config.range_warmup_days * 1440.0
    shape.verdicts(x, minutes, stage, steps, level, significant, min_dev, shape_formed, range_formed, config.shape_gate, config.shape_alarm,
                   config.suppress_minutes, config.incident_quiet_minutes, config.min_alarm_gap_minutes,
             st["since_alarm"], st["since_unusual"], st["shape_values"], st["shape_slots"], st["shape_sums"], st["shape_scalars"],
             bucket, config.shape_length, config.shape_lookback_days * 1440.0 / bucket,
             config.shape_recompute_minutes / bucket, config.shape_capacity,
             config.shape_typical_halflife_days * 1440.0 / bucket, config.recurrence_correlation,
             config.recurrence_tolerance_minutes / bucket, config.recurrence_max_scale, config.recurrence_max_shift,
             config.shape_fill_slots, shape_score, recurrence, fire, sev,
             config.range_hour_minutes / bucket, config.range_exclusion_minutes / bucket, config.range_margin,
             beyond, range_low, range_high, level_hour)
    z, ewma_score, seasonal, g, combined, baseline, std, dev, s_mean = out
    result = DetectionResult(x, np.fmax(combined, shape_score), fire, sev, baseline, std, dev, s_mean,
                             {"zscore": z, "ewma": ewma_score, "seasonal": seasonal, "gmm": g, "shape": shape_score,
                              "range": beyond},
                             recurrence, level_hour, range_low, range_high, min_dev)
    return result, st


def persisted_state(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a pipeline stores between windows: everything but the shape detector's week of
    buckets, which `rebuild_shape_state` recomputes from the raw metrics."""
    return {k: v for k, v in state.items() if k not in shape.REBUILT}


def shape_history_minutes(config: DetectorConfig = DetectorConfig()) -> float:
    """How far before a window's start `rebuild_shape_state` needs the raw metrics: the lookback
    and one block (shape.py: the lags a block's evaluations can use start no earlier), then the
    longest gap that is filled in and one bucket more: a bucket filled in at the oldest slot a
    window may search is drawn from the point before its gap."""
    return (config.shape_lookback_days * 1440.0 + config.shape_recompute_minutes
            + (config.shape_fill_slots + 1) * config.shape_bucket_minutes)


def rebuild_shape_state(state: dict[str, np.ndarray], history: np.ndarray, timestamps: Sequence,
                        config: DetectorConfig = DetectorConfig()) -> dict[str, np.ndarray]:
    """`state` (as `persisted_state` left it, realigned to the series of `history`) with the
    shape detector's buckets rebuilt from `history[n_series, n_points]`: the series' raw values
    over at least `shape_history_minutes` before the window, up to its start. For a window that
    starts on a UTC 6-hour mark (the pipeline's), the results are exactly those of a state
    carried in memory."""
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(history, dtype=float)))
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
    minutes = ts.as_unit("s").asi8.astype(float) / 60.0 if len(ts) else np.empty(0)
    cap = config.shape_capacity
    out = shape.reset_rebuilt(state, cap)
    for i in range(x.shape[0]):
        vals, slots = shape.bucket_means(x[i], minutes, config.shape_bucket_minutes, config.shape_fill_slots)
        shape.replay_buckets(out["shape_values"], out["shape_slots"], out["shape_scalars"], i, vals, slots, cap)
    return out


@njit(cache=True)
def _kernel(x, minutes, gmm, thr, halflife, a_short, slot_width, season_halflife_days, season_warmup_days,
            warmup_minutes, min_rel, floor_frac, winsor, startup_points, startup_minutes, min_dev, startup_values, count, mean_a, var_a, ewma_a, last_a, first_a,
            slot_mean, slot_var, slot_days, slot_last_day, out, stage, steps, level, significant):  # pragma: no cover
    ln2 = math.log(2.0)
    n_series, n = x.shape
    for i in range(n_series):
        for t in range(n):
            v = x[i, t]
            now = minutes[t]
            ok = not math.isnan(v) and not math.isinf(v)
            step = 1.0
            if not math.isnan(last_a[i]):
                step = max(now - last_a[i], 1.0)
            a_long = 1.0 - math.exp(-ln2 * step / halflife)
            mean = mean_a[i]
            var = var_a[i]
            scale = abs(mean) if not math.isnan(mean) else 0.0
            spread_floor = max(min_dev[i] / thr, 1e-9)
            std = max(math.sqrt(var), max(floor_frac * scale, spread_floor))
            # The EWMA's relative deviation is over the baseline's level, and over the level at
            # which a change of min_deviation reads as the threshold when that is larger.
            dev_scale = max(scale, ewma_unit_level(min_dev[i], thr))
            # Whether the baseline has started (DetectorConfig.baseline_startup_points; the count
            # jumps to it when the startup ends early). A state stored before startup_values
            # existed has no startup points: its baseline started with its first point.
            started = count[i] >= startup_points or (count[i] > 0 and math.isnan(startup_values[i, 0]))
            z = math.nan
            if ok and not math.isnan(mean) and started:
                z = abs(v - mean) / std
            dev = math.nan
            if ok and not math.isnan(ewma_a[i]) and not math.isnan(mean) and dev_scale > 1e-12:
                dev = abs(ewma_a[i] - mean) / dev_scale
            slot = int((now % 1440.0) // slot_width)
            s_mean = slot_mean[i, slot]
            s_var = slot_var[i, slot]
            s_days = slot_days[i, slot]
            s_abs = abs(s_mean) if not math.isnan(s_mean) else 0.0
            # A profile learnt from a few days is noisy: its spread is never taken below a
            # quarter of the series' overall spread.
            s_std = max(max(math.sqrt(s_var), 0.25 * std), max(floor_frac * s_abs, spread_floor))
            seasonal = math.nan
            if ok and s_days >= season_warmup_days and not math.isnan(s_mean):
                seasonal = abs(v - s_mean) / s_std
            g = gmm[i, t]
            ewma_score = dev / 0.1
            # With a seasonal profile the daily cycle is explained: a point must stand out from
            # its time of day and also from the recent baseline (so a level shift stops alarming
            # once the baseline has absorbed it). Without one, the recent baseline decides.
            recent = (not math.isnan(z)) and z > 0.5 * thr
            if not math.isnan(seasonal):
                core = seasonal if recent else _fmin(z, seasonal)
                trend = _fmin(ewma_score, seasonal)
            else:
                core = z
                trend = ewma_score if recent else _fmin(ewma_score, z)
            combined = _fmax(_fmax(core, trend), g)
            if ok and math.isnan(first_a[i]):
                first_a[i] = now
            formed = (not math.isnan(first_a[i])) and now - first_a[i] >= warmup_minutes
            # With a min_deviation, the short EWMA (this point included) must also have moved half
            # of it: a single minute counts only at over 5 times it (one failed request in a quiet
            # minute), a sustained change from its first minute.
            far = min_dev[i] == 0.0 or (not math.isnan(mean) and abs(v - mean) >= min_dev[i] and (
                math.isnan(ewma_a[i]) or abs(ewma_a[i] + a_short * (v - ewma_a[i]) - mean) >= 0.5 * min_dev[i]))
            material = ok and not math.isnan(mean) and abs(v - mean) > min_rel * scale and far
            candidate = formed and material and not math.isnan(combined) and combined > thr
            out[0, i, t] = z
            out[1, i, t] = ewma_score
            out[2, i, t] = seasonal
            out[3, i, t] = g
            out[4, i, t] = combined
            out[5, i, t] = mean
            out[6, i, t] = std
            out[7, i, t] = dev
            out[8, i, t] = s_mean
            stage[i, t] = 2 if candidate else 1 if formed and ok else 0
            significant[i, t] = ok and far
            steps[i, t] = step
            if ok:
                zz = _fmax(core, g)
                zz = 0.0 if math.isnan(zz) else zz
                dd = dev if (not math.isnan(trend) and trend > thr and not math.isnan(dev)) else 0.0
                lv = 1
                if zz > 3.0 or dd > 0.3:
                    lv = 2
                if zz > 4.0 or dd > 0.4:
                    lv = 3
                if zz > 5.0 or dd > 0.5:
                    lv = 4
                level[i, t] = lv
            # ---- update the state with the observed point (winsorised) ----
            if ok:
                if not started:
                    # Starting: the points are kept, the baseline meanwhile is their plain mean,
                    # and once enough are in it becomes their median, its spread their MAD.
                    k = int(count[i])
                    startup_values[i, k] = v
                    mean_a[i] = v if math.isnan(mean) else mean + (v - mean) / (k + 1.0)
                    if k + 1 >= startup_points or (k + 1 >= 3 and now - first_a[i] >= startup_minutes):
                        kept = startup_values[i, :k + 1]
                        med = np.median(kept)
                        spread = 1.4826 * np.median(np.abs(kept - med))
                        if spread == 0.0:
                            # Half the points or more are one value (a series mostly at 0): the
                            # mean absolute deviation still sees the others, all but the largest
                            # tenth (an overloaded minute among them would inflate it).
                            deviations = np.sort(np.abs(kept - med))
                            spread = 1.2533 * np.mean(deviations[:len(deviations) - len(deviations) // 10])
                        mean_a[i] = med
                        var_a[i] = spread * spread
                        count[i] = startup_points - 1.0  # started, whatever the clock does next
                else:
                    d = min(max(v - mean, -winsor * std), winsor * std)
                    mean_a[i] = mean + a_long * d
                    var_a[i] = (1.0 - a_long) * (var + a_long * d * d)
                if math.isnan(ewma_a[i]):
                    ewma_a[i] = v
                else:
                    ewma_a[i] = ewma_a[i] + a_short * (v - ewma_a[i])
                count[i] += 1.0
                day = now // 1440.0
                if slot_last_day[i, slot] != day:
                    slot_days[i, slot] += 1.0
                slot_last_day[i, slot] = day
                # Half-life in days of this slot's observations (it sees slot_width/step points a day).
                a_season = 1.0 - math.exp(-ln2 * step / (season_halflife_days * slot_width))
                if math.isnan(s_mean):
                    slot_mean[i, slot] = v
                else:
                    sd = min(max(v - s_mean, -winsor * s_std), winsor * s_std)
                    slot_mean[i, slot] = s_mean + a_season * sd
                    slot_var[i, slot] = (1.0 - a_season) * (s_var + a_season * sd * sd)
                last_a[i] = now


@njit(cache=True)
def ewma_unit_level(min_deviation, threshold):  # pragma: no cover - compiled
    """The level over which the EWMA's deviation is taken when the baseline is nearer 0: the one at
    which a change of min_deviation reads as the threshold (the EWMA score is deviation / 0.1)."""
    return min_deviation / (0.1 * threshold)


@njit(cache=True)
def _fmin(a, b):  # pragma: no cover - compiled
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return min(a, b)


@njit(cache=True)
def _fmax(a, b):  # pragma: no cover - compiled
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


def _explain(result: DetectionResult, i: int, t: int, config: DetectorConfig) -> tuple[list[str], str]:
    value = result.values[i, t]
    parts, fired = [], []
    base, dev = result.baseline[i, t], result.ewma_dev[i, t]
    for name in DETECTORS:
        s = result.scores[name][i, t]
        # The shape score reads on its own scale: 1 is an ordinary stretch; it counts from the gate.
        bar = config.shape_gate if name == "shape" else config.range_margin if name == "range" else config.threshold
        if not np.isfinite(s) or s <= bar:
            continue
        fired.append(name)
        if name == "zscore":
            parts.append(f"zscore {s:.1f}: value {value:.4g} vs baseline {base:.4g} ± {result.std[i, t]:.3g}")
        elif name == "ewma":
            # The deviation is relative to the baseline, or to the level at which min_deviation
            # reads as the threshold when that is larger (a baseline near 0): then say it in units.
            unit_scale = ewma_unit_level(result.min_deviation[i], config.threshold)
            if unit_scale > abs(base):
                parts.append(f"ewma: short-term mean deviates {dev * unit_scale:.4g} from baseline {base:.4g} "
                             f"(smallest material change {result.min_deviation[i]:g})")
            else:
                parts.append(f"ewma: short-term mean deviates {dev:.0%} from baseline {base:.4g}")
        elif name == "seasonal":
            parts.append(f"seasonal {s:.1f}: value {value:.4g} vs usual {result.seasonal_expected[i, t]:.4g} at this time of day")
        elif name == "shape":
            span = config.shape_length * config.shape_bucket_minutes
            parts.append(f"shape {s:.1f}: the last {span / 60:g} h are {s:.1f}x further from anything in the past "
                         f"{config.shape_lookback_days:g} days than usual")
        elif name == "range":
            low, high, level = result.range_low[i, t], result.range_high[i, t], result.level_hour[i, t]
            side = "above the highest" if level > high else "below the lowest"
            parts.append(f"range {s:.2f}: the last {config.range_hour_minutes:g} min average {level:.4g}, {side} "
                         f"{config.shape_bucket_minutes:g}-minute average of the past {config.shape_lookback_days:g} "
                         f"days up to {config.range_exclusion_minutes / 60:g} h before this "
                         f"{config.shape_recompute_minutes / 60:g}-hour block "
                         f"({low:.4g} to {high:.4g}) by {s:.0%} of that range")
        else:
            parts.append(f"gmm {s:.1f}: unusual combination of this service's metrics")
    return fired, "; ".join(parts)


def anomaly_records(result: DetectionResult, series_ids: Sequence[str], timestamps: Sequence,
                    config: DetectorConfig = DetectorConfig()) -> list[dict[str, Any]]:
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
    records = []
    for i, t in zip(*np.nonzero(result.is_anomaly)):
        fired, text = _explain(result, i, t, config)
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

def detect_dataframe(df: pd.DataFrame, timestamp_col: str | None = None, value_col: str | None = None,
                     config: DetectorConfig = DetectorConfig(), source: str = "input",
                     date_order: str | None = None, min_deviation: float = 0.0) -> pd.DataFrame:
    return _detect_parsed(df, *_parse_input(df, timestamp_col, value_col, source, date_order), config, min_deviation)


def _parse_input(df: pd.DataFrame, timestamp_col: str | None, value_col: str | None,
                 source: str, date_order: str | None = None) -> tuple[pd.Series, np.ndarray]:
    """The timestamps and the values, found as for backtest traces (core/traces.py): ISO 8601,
    Unix times, compact dates, date and time columns; what is not one time per row is refused
    with its row. The value column is `value_col`, else the first numeric one that is not part
    of the timestamp; one of words rather than numbers is refused."""
    df = df.copy(deep=False)  # the caller's frame keeps its own attrs
    df.attrs["date_order"] = date_order  # "dmy" or "mdy" for dates like 01/03/2026 (--date-order)
    _, ts, used = find_timestamps(df, source, timestamp_col)
    # A column named "value" is the value, with a few placeholders ("-", "#DIV/0!") among its
    # numbers, before any other numeric column (latency_ms beside it, say).
    _, values = find_numbers(df, source, used, value_col, ("value", "values"), "value")
    return ts, values


def _detect_parsed(df: pd.DataFrame, ts: pd.Series, values: np.ndarray, config: DetectorConfig,
                   min_deviation: float = 0.0) -> pd.DataFrame:
    # Rows are scored in file order (as NAB does); a step back in time counts as one minute.
    result, _ = detect_chunk(values[None, :], ts, None, config, min_deviation=min_deviation)
    # The new columns built at once, beside the input's (one column insertion at a time, and
    # a Python string per row for the severity, cost more than the detection itself).
    added = pd.DataFrame({
        "score": result.score[0],
        "is_anomaly": result.is_anomaly[0],
        "severity": pd.Categorical.from_codes(result.severity[0].astype(np.int8), categories=list(SEVERITY_LEVELS)),
        **{f"score_{k}": result.scores[k][0] for k in DETECTORS},
    }, index=df.index)
    # An input column of the same name as a verdict column (a file of detect's own output,
    # scored again) is kept, renamed, rather than silently replaced.
    taken = set(map(str, df.columns)) | set(added.columns)
    names, renamed = [], {}
    for c in df.columns:  # by position: a frame (not a CSV) may hold two columns of one name
        if c in added.columns:
            new, k = f"{c}_input", 2
            while new in taken:
                new, k = f"{c}_input{k}", k + 1
            renamed.setdefault(c, []).append(new)
            taken.add(new)
            c = new
        names.append(c)
    kept = df.set_axis(names, axis=1)
    out = pd.concat([kept, added], axis=1)
    out.attrs["renamed_input_columns"] = {c: new[0] if len(new) == 1 else new for c, new in renamed.items()}
    return out


def detect_csv(input_path: str | Path, output_path: str | Path, timestamp_col: str | None = None,
               value_col: str | None = None, config: DetectorConfig = DetectorConfig(),
               date_order: str | None = None, min_deviation: float = 0.0) -> dict[str, Any]:
    from .atomic import atomic_write_text

    try:
        df = read_table(input_path)  # the separators and optional header backtest traces may have
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{input_path} is not a CSV with a timestamp and a value column ({exc}).") from None
    require_two_columns(df, input_path, "series", "value")
    ts, values = _parse_input(df, timestamp_col, value_col, str(input_path), date_order)
    out = _detect_parsed(df, ts, values, config, min_deviation)
    atomic_write_text(output_path, out.to_csv(index=False), mode=0o644)
    renamed = out.attrs.get("renamed_input_columns", {})
    return {"rows": len(out), "anomalies": int(out["is_anomaly"].sum()),
            **({"renamed_input_columns": renamed} if renamed else {}),
            "out_of_order_rows": int((ts.diff() < pd.Timedelta(0)).sum()),
            "by_severity": out.loc[out["is_anomaly"], "severity"].value_counts().to_dict(), "output": str(output_path)}
