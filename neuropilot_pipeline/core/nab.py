"""NAB's standard-profile score for binary detections (Numenta Anomaly Benchmark v1.1 rules).

Per file: the first 15 % of rows (at most 750) are a probation period where nothing counts.
Inside a labelled window only the best (earliest) detection counts, worth
tp_weight * S(p) / S(-1) with S the scaled sigmoid 2 / (1 + e^(5p)) - 1 of its relative
position p = -(right - i + 1) / width; a window with no detection costs fn_weight. A
detection outside every window costs fp_weight * S(p), with p its distance after the
previous window relative to that window's width (3.0, i.e. a full -1, before any window).
Over a corpus the raw score is normalised so the detector that never fires scores 0 and the
perfect one 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

STANDARD_PROFILE = {"tp_weight": 1.0, "fp_weight": 0.11, "fn_weight": 1.0}
PROBATION_PERCENT = 0.15


def scaled_sigmoid(position: float) -> float:
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


@dataclass
class FileScore:
    raw: float
    null: float
    perfect: float
    windows: int
    detected: int
    false_positives: int


def probation_length(n_rows: int) -> float:
    return min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_PERCENT * 5000)


def score_file(timestamps: Sequence, detections: Sequence[bool], windows: Iterable[Sequence],
               profile: Mapping[str, float] = STANDARD_PROFILE) -> FileScore:
    ts = pd.DatetimeIndex(pd.to_datetime(pd.Series(timestamps)))
    det = np.asarray(detections, dtype=bool)
    if len(ts) != len(det):
        raise ValueError("timestamps and detections differ in length")
    n = len(ts)
    probation = probation_length(n)
    index = {t: i for i, t in enumerate(ts)}
    spans = []
    for start, end in windows:
        lo, hi = index.get(pd.Timestamp(start)), index.get(pd.Timestamp(end))
        if lo is None or hi is None:
            raise ValueError(f"window [{start}, {end}] does not start and end on a row of the file")
        spans.append((lo, hi))
    spans.sort()
    max_tp = scaled_sigmoid(-1.0)
    tpw, fpw, fnw = profile["tp_weight"], profile["fp_weight"], profile["fn_weight"]
    window_best: dict[int, float] = {}
    window_perfect: dict[int, float] = {}
    fp_total, fp_count = 0.0, 0
    prev_right = prev_width = None
    w = 0
    for i in range(n):
        in_window = w < len(spans) and spans[w][0] <= i <= spans[w][1]
        if in_window:
            lo, hi = spans[w]
            width = float(hi - lo + 1)
            score = scaled_sigmoid(-(hi - i + 1) / width) * tpw / max_tp
        else:
            pos = 3.0 if prev_right is None else abs(prev_right - i) / float(prev_width - 1)
            score = scaled_sigmoid(pos) * fpw
        if i >= probation:
            if in_window:
                window_best.setdefault(w, -fnw)
                window_perfect[w] = max(window_perfect.get(w, -fnw), score)
                if det[i]:
                    window_best[w] = max(window_best[w], score)
            elif det[i]:
                fp_total += score
                fp_count += 1
        if in_window and i == spans[w][1]:
            prev_right, prev_width = spans[w][1], float(spans[w][1] - spans[w][0] + 1)
            w += 1
    raw = fp_total + sum(window_best.values())
    return FileScore(raw=raw, null=-fnw * len(window_best), perfect=sum(window_perfect.values()),
                     windows=len(window_best), detected=sum(1 for v in window_best.values() if v > -fnw),
                     false_positives=fp_count)


def normalised(scores: Iterable[FileScore]) -> dict[str, float]:
    scores = list(scores)
    raw, null, perfect = (sum(getattr(s, k) for s in scores) for k in ("raw", "null", "perfect"))
    return {"score": 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan"),
            "raw": raw, "windows": sum(s.windows for s in scores), "detected": sum(s.detected for s in scores),
            "false_positives": sum(s.false_positives for s in scores)}
