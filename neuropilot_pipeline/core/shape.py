"""The shape detector: is the last stretch of a metric unlike anything it did in the past week?

A metric's points are averaged into buckets (`bucket_minutes`, 5). Buckets no point fell in
are filled in, when the next point arrives, on the straight line from the last bucket to it, if
the gap is at most `fill_slots` buckets (an hour): a missed scrape, or an export at one point
every 10 minutes or every hour, then has shapes of the same 2 hours of time as a full 5-minute
series, matched against stretches of the past that are 2 hours long too. A longer gap is an
outage, not invented: the shape spans the buckets on either side of it (a series coarser than
hourly is shaped point by point). The shape at a bucket is its last `length` buckets (2 hours at 5 minutes);
its distance to the past is the root-mean-square difference to the nearest stretch of the same
length that started within `lookback_minutes` (7 days) and does not overlap it: the "left
nearest neighbour" of matrix-profile discord search, on raw values, so a level the metric has
never held is far from everything. The score is that distance over its typical value (an
exponentially weighted mean of past distances, half-life `typical_halflife_minutes`): 1 is an
ordinary stretch, 3 one three times further from anything seen than usual.

Why it is there: the z-score, EWMA and seasonal detectors say how far a point is from its
baseline, but not whether the metric has done this before. A tweet-volume spike that happens
every few days is far from the baseline every time; a machine's temperature sliding down over
a day never is, because the baseline follows it. The shape score tells both apart.

The same week of buckets gives the level's range (`ring_span`): the lowest and highest bucket
up to half a day before the current 6-hour block, against which the last hour's mean is judged.
A slow slide moves little in any 2 hours, so on a metric that swings a lot its shapes stay
within their usual distance of the week; its level, though, ends where the week never was.

Cost: each bucket updates one running sum of squares per lag (O(lookback) a bucket), and every
`recompute_minutes` (6 hours, UTC-aligned like the pipeline's windows) the sums are recomputed
from the buckets themselves. That recomputation is what lets the pipeline rebuild the state at
a window's start from the raw metrics (`replay_buckets`) instead of storing a week of buckets
per series in every window's state: a rebuilt state gives exactly the numbers of a state
carried in memory, because both start their running sums at the same bucket from the same
values, and the lags either could not share are never used.

Layout: bucket k of a series sits at k % cap and again at k % cap + cap in `shape_values`, so
"k buckets back" is a plain descending index for every lag (no modulo in the inner loops).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Columns of the per-series scalar state (`shape_scalars`). EVAL_N and SCRATCH_N look alike but
# are not: EVAL_N (stored) says the filling bucket was scored whole, so its closing reports no
# second score; SCRATCH_N (reset by a rebuild) says the inactive sums row holds that evaluation.
CUR_SLOT, CUR_SUM, CUR_N, EVAL_N, LAST_MINUTE, LAST_STEP, N_BUCKETS, TYP_NUM, TYP_DEN, TYP_SLOT, SCRATCH_N, \
    ACTIVE, SCRATCH_BEST = range(13)
N_SCALARS = 13

# What a pipeline does not store between windows: a week of buckets per series, rebuilt from
# the raw metrics (`replay_buckets`). The scalars (the bucket filling, the typical distance) are stored.
REBUILT = ("shape_values", "shape_slots", "shape_sums")


def capacity(bucket_minutes: float, length: int, lookback_minutes: float, recompute_minutes: float) -> int:
    """Buckets kept per series: the lookback and two recomputation blocks, plus two shapes."""
    return int(math.ceil((lookback_minutes + 2 * recompute_minutes) / bucket_minutes)) + 2 * length + 2


def new_state(n_series: int, cap: int) -> dict[str, np.ndarray]:
    scalars = np.zeros((n_series, N_SCALARS))
    scalars[:, [CUR_SLOT, LAST_MINUTE, TYP_SLOT]] = np.nan
    scalars[:, [EVAL_N, SCRATCH_N]] = -1.0
    return {
        "shape_scalars": scalars,
        "shape_values": np.full((n_series, 2 * cap), np.nan),  # bucket means, twice (see Layout)
        "shape_slots": np.full((n_series, cap), np.nan),  # their bucket numbers (minutes // bucket_minutes)
        # Sums of squares per lag: row ACTIVE for the shape ending at the last closed bucket, the
        # other row for the bucket filling when it was evaluated (a closing then only flips ACTIVE).
        "shape_sums": np.full((n_series, 2, cap), np.nan),
    }


def reset_rebuilt(state: dict[str, np.ndarray], cap: int) -> dict[str, np.ndarray]:
    """Fresh rebuilt parts for `state`'s series (whose scalars are kept, but for the counters that
    index the rebuilt parts)."""
    n = state["shape_scalars"].shape[0]
    fresh = new_state(n, cap)
    out = dict(state)
    out.update({k: fresh[k] for k in REBUILT})
    scalars = np.array(state["shape_scalars"], dtype=float, copy=True)
    scalars[:, N_BUCKETS] = 0.0
    scalars[:, SCRATCH_N] = -1.0
    scalars[:, ACTIVE] = 0.0
    out["shape_scalars"] = scalars
    return out


@njit(cache=True)
def _lag_bounds(slots, i, e, bound_slot, length, cap):
    """(lo, hi): the lags whose shape starts in the ring and at or after bound_slot, for the shape
    ending at bucket index e. Starts are e - lag - length + 1; slots rise with the index."""
    max_lag = cap - 2 * length
    hi = min(max_lag, e - length + 1)  # start >= 0
    lo = length
    if hi < lo:
        return lo, lo - 1
    # the largest lag whose start slot >= bound_slot (bisection over a rising sequence)
    if slots[i, (e - hi - length + 1) % cap] >= bound_slot:
        return lo, hi
    if slots[i, (e - lo - length + 1) % cap] < bound_slot:
        return lo, lo - 1
    a, b = lo, hi  # start slot of lag a >= bound, of lag b < bound
    while b - a > 1:
        mid = (a + b) // 2
        if slots[i, (e - mid - length + 1) % cap] >= bound_slot:
            a = mid
        else:
            b = mid
    return lo, a


@njit(cache=True)
def _advance(values, row_in, row, e, new_value, hi_valid, hi_all, length, cap):
    """row[lag] = row_in[lag] brought from the shape ending at bucket e - 1 to the one ending at
    e (value new_value), for lags [length, hi_all]; the rest NaN. Returns the smallest over the
    valid lags [length, hi_valid] (inf when none). This is the detector's inner loop: it is split
    into branch-free runs (with or without the pair leaving the shape, with or without the minimum)."""
    base = e % cap + cap  # values[base - d] is bucket e - d
    for lag in range(0, length):
        row[lag] = math.nan
    hi_rem = min(hi_all, e - length)  # lags whose oldest pair leaves the shape
    old = values[base - length] if e - length >= 0 else 0.0
    best = math.inf
    for lag in range(length, min(hi_valid, hi_rem) + 1):
        a = new_value - values[base - lag]
        b = old - values[base - length - lag]
        s = row_in[lag] + a * a - b * b
        row[lag] = s
        if s < best:
            best = s
    for lag in range(max(min(hi_valid, hi_rem) + 1, length), hi_rem + 1):
        a = new_value - values[base - lag]
        b = old - values[base - length - lag]
        row[lag] = row_in[lag] + a * a - b * b
    for lag in range(max(hi_rem + 1, length), hi_all + 1):
        a = new_value - values[base - lag]
        s = row_in[lag] + a * a
        row[lag] = s
        if lag <= hi_valid and s < best:
            best = s
    for lag in range(max(hi_all + 1, length), row.shape[0]):
        row[lag] = math.nan
    return max(best, 0.0)  # rounding can leave a sum a hair below zero


@njit(cache=True)
def _recompute(values, slots, row, i, e, keep_slot, length, lookback_slots, cap):
    """Sums of squares per lag for the shape ending at bucket e, from the buckets themselves, for
    the lags whose shape starts at or after keep_slot; the others are NaN until the next block.
    Returns the smallest over the lags within the lookback of bucket e."""
    e_slot = slots[i, e % cap]
    base = e % cap + cap
    vals = values[i]
    for lag in range(0, cap):
        row[lag] = math.nan
    lo, hi_keep = _lag_bounds(slots, i, e, keep_slot, length, cap)
    _, hi_valid = _lag_bounds(slots, i, e, e_slot - lookback_slots, length, cap)
    best = math.inf
    for lag in range(lo, hi_keep + 1):
        s = 0.0
        for j in range(length):
            a = vals[base - j] - vals[base - j - lag]
            s += a * a
        row[lag] = s
        if lag <= hi_valid and s < best:
            best = s
    return best


@njit(cache=True)
def _write(values, slots, i, k, value, slot, cap):
    p = k % cap
    values[i, p] = value
    values[i, p + cap] = value
    slots[i, p] = slot


@njit(cache=True)
def _score(best, sc, i, level, length):
    """Distance over its typical value; a typical value of (almost) zero, a flat line, is
    floored at a millionth of the level so that a real change scores high, not infinite."""
    if best == math.inf or sc[i, TYP_DEN] <= 0:
        return math.nan
    return math.sqrt(best / length) / max(sc[i, TYP_NUM] / sc[i, TYP_DEN], 1e-6 * abs(level), 1e-12)


@njit(cache=True)
def _close(values, slots, sums, sc, i, new_slot, length, lookback_slots, block_slots, cap, typ_halflife_slots):
    """Close series i's filling bucket (a point of bucket new_slot arrived): write it to the ring,
    bring the per-lag sums to it and fold its distance into the typical distance. Returns the
    closed bucket's score (nan if none).

    When the arriving point opens a new block (UTC 6-hour mark), the sums are recomputed from the
    buckets, for the lags whose shape starts within the lookback and one block before the block
    (the only lags any evaluation in the block can use). A pipeline window starts on a block, so
    the state it rebuilds needs only the ring: its first point recomputes the sums, as here."""
    e = int(sc[i, N_BUCKETS])
    v = sc[i, CUR_SUM] / sc[i, CUR_N]
    slot = sc[i, CUR_SLOT]
    block = new_slot // block_slots
    new_block = block != slot // block_slots
    active = int(sc[i, ACTIVE])
    _write(values, slots, i, e, v, slot, cap)
    if new_block:
        best = _recompute(values, slots, sums[i, 1 - active], i, e, block * block_slots - lookback_slots - block_slots,
                          length, lookback_slots, cap)
    elif sc[i, SCRATCH_N] == sc[i, CUR_N]:
        best = sc[i, SCRATCH_BEST]  # evaluated whole while filling: its sums are in the other row
    else:
        _, hi = _lag_bounds(slots, i, e, slot - lookback_slots, length, cap)
        best = _advance(values[i], sums[i, active], sums[i, 1 - active], e, v, hi,
                        min(cap - 2 * length, e - length + 1), length, cap)
    sc[i, ACTIVE] = 1 - active
    sc[i, N_BUCKETS] = e + 1
    sc[i, SCRATCH_N] = -1.0
    score = _score(best, sc, i, v, length)
    if best < math.inf:
        if not math.isnan(sc[i, TYP_SLOT]):
            f = 0.5 ** ((slot - sc[i, TYP_SLOT]) / typ_halflife_slots)
            sc[i, TYP_NUM] *= f
            sc[i, TYP_DEN] *= f
        sc[i, TYP_NUM] += math.sqrt(best / length)
        sc[i, TYP_DEN] += 1.0
        sc[i, TYP_SLOT] = slot
    return score


@njit(cache=True)
def _tentative(values, slots, sums, sc, i, length, lookback_slots, cap):
    """Score of the shape ending at the bucket still filling, as if it closed now; its sums are
    kept in the inactive row for the closing."""
    e = int(sc[i, N_BUCKETS])
    if e == 0:
        return math.nan
    v = sc[i, CUR_SUM] / sc[i, CUR_N]
    slot = sc[i, CUR_SLOT]
    active = int(sc[i, ACTIVE])
    # Written where bucket e will go, so the lag bounds see its slot as the newest (the slot it
    # overwrites, bucket e - cap, is beyond every lag).
    _write(values, slots, i, e, v, slot, cap)
    _, hi = _lag_bounds(slots, i, e, slot - lookback_slots, length, cap)
    best = _advance(values[i], sums[i, active], sums[i, 1 - active], e, v, hi,
                    min(cap - 2 * length, e - length + 1), length, cap)
    sc[i, SCRATCH_N] = sc[i, CUR_N]
    sc[i, SCRATCH_BEST] = best
    return _score(best, sc, i, v, length)


@njit(cache=True)
def recurrence(values, slots, i, e, length, cap, day_slots, tol_slots, bound_slot, max_scale, max_shift):
    """How closely the shape ending at bucket e repeats a stretch of an earlier day at the same
    time of day: the highest correlation with a stretch ending within tol_slots of a whole
    number of days before it and starting at or after bound_slot, among those whose spread is
    at least 1/max_scale of the shape's and whose mean is within max_shift of their own spread
    of the shape's. NaN when no stretch qualifies (or the shape is flat).

    Why: a daily job's spike is the same shape every day but not the same height, so the raw
    distance finds it new on a taller day; correlated with yesterday's at its own level and
    spread, it is not. The limits keep a surge of the usual morning ramp (the same shape, three
    times the size) or a level never held at that hour an anomaly. A smaller spread than the
    earlier day's is no limit: the first minutes of a job, in a 5-minute bucket still filling,
    are a smaller copy of a whole bucket of it."""
    base = e % cap + cap  # values[i, base - d] is bucket e - d
    vals = values[i]
    mean_a = 0.0
    for j in range(length):
        mean_a += vals[base - j]
    mean_a /= length
    ss_a = 0.0
    for j in range(length):
        d = vals[base - j] - mean_a
        ss_a += d * d
    sd_a = math.sqrt(ss_a / length)
    if not sd_a > 1e-12 * max(abs(mean_a), 1.0):
        return math.nan
    e_slot = slots[i, e % cap]
    best = math.nan
    lag = length
    hi = min(cap - 2 * length, e - length + 1)
    while lag <= hi:
        if slots[i, (e - lag - length + 1) % cap] < bound_slot:
            break  # slots rise with the index: every larger lag starts earlier still
        ds = e_slot - slots[i, (e - lag) % cap]
        days = math.floor(ds / day_slots + 0.5)
        if days < 1 or abs(ds - days * day_slots) > tol_slots:
            # On to the first lag in the next day's band. A lag one larger is at least one slot
            # further back, so the band has begun by lag + (edge - ds); with gaps, sooner: bisect.
            edge = (math.floor((ds + tol_slots) / day_slots) + 1) * day_slots - tol_slots
            lo, top = lag + 1, lag + max(1, int(math.ceil(edge - ds)))
            while lo < top:
                mid = (lo + top) // 2
                if e - mid >= 0 and e_slot - slots[i, (e - mid) % cap] >= edge:
                    top = mid
                else:
                    lo = mid + 1
            lag = top
            continue
        b = base - lag
        lag += 1
        mean_b = 0.0
        for j in range(length):
            mean_b += vals[b - j]
        mean_b /= length
        ss_b = 0.0
        cross = 0.0
        for j in range(length):
            d = vals[b - j] - mean_b
            ss_b += d * d
            cross += d * (vals[base - j] - mean_a)
        sd_b = math.sqrt(ss_b / length)
        if sd_a > max_scale * sd_b or abs(mean_a - mean_b) > max_shift * sd_b:
            continue
        r = cross / math.sqrt(ss_a * ss_b)
        if math.isnan(best) or r > best:
            best = r
    return best


@njit(cache=True)
def _gap_to_fill(last_slot, slot, fill_slots):
    """How many buckets to fill in between the last bucket and a point's: those in between, if
    there are at most fill_slots of them; a longer gap is an outage and is left as it is."""
    missing = int(slot - last_slot) - 1
    return missing if 0 < missing <= fill_slots else 0


@njit(cache=True)
def _filled_value(last_value, value, k, missing):
    """The k-th of `missing` buckets between a bucket of mean last_value and the point value
    that arrived after them, on the straight line between the two. Shared by `step_series` and
    `bucket_means`, so a rebuilt ring holds exactly the values of a carried one."""
    return last_value + (value - last_value) * k / (missing + 1)


@njit(cache=True)
def _rebuilt_from(slot, lookback_slots, block_slots):
    """The oldest bucket slot a state rebuilt at the start of slot's block holds: the lookback
    and one block before the block (`rebuild_shape_state`'s history)."""
    return (slot // block_slots) * block_slots - lookback_slots - block_slots


@njit(cache=True)
def ring_span(values, slots, i, n_buckets, cap, first_slot, last_slot):
    """(sum, count, lowest, highest) of series i's bucket means in the ring with slots in
    [first_slot, last_slot], walking back from the newest; lowest and highest are nan when no
    bucket is there. Both the level (the last hour) and its range (the week) read it."""
    total, count, lo, hi = 0.0, 0.0, math.inf, -math.inf
    # Not bucket n_buckets - cap: a tentative evaluation may have written the next bucket over it.
    k = n_buckets - 1
    while k > n_buckets - cap and k >= 0 and slots[i, k % cap] >= first_slot:
        if slots[i, k % cap] <= last_slot:
            v = values[i, k % cap]
            total, count = total + v, count + 1.0
            lo, hi = min(lo, v), max(hi, v)
        k -= 1
    if lo > hi:
        return total, count, math.nan, math.nan
    return total, count, lo, hi


@njit(cache=True)
def _beyond(level, lo, hi):
    """How far level lies outside [lo, hi], in widths of that range (0 inside; nan without a
    range). A range of (almost) no width, a flat week, is taken as a millionth of its level wide,
    so a real change scores high, not infinite."""
    if math.isnan(level) or math.isnan(lo):
        return math.nan
    width = max(hi - lo, 1e-6 * max(abs(lo), abs(hi)), 1e-12)
    if level > hi:
        return (level - hi) / width
    if level < lo:
        return (lo - level) / width
    return 0.0


@njit(cache=True)
def step_series(values, slots, sums, sc, i, x, minutes, want, out_score, out_closed, out_recur, bucket_minutes,
                length, lookback_slots, block_slots, cap, typ_halflife_slots, gate, alarm, tol_slots, max_scale, max_shift,
                fill_slots, hour_slots, exclusion_slots, range_margin, range_formed, out_beyond, out_low, out_high,
                out_level):
    """Feed series i's points x (at `minutes`) through the shape state. out_score[t] is the
    score of the shape ending at point t's bucket, evaluated where want[t] is set or where the
    point looks like the last of its bucket (the next point, one step on, falls in the next);
    out_closed[t] is the score of a bucket closed at t that no evaluation saw whole (else nan);
    out_recur[t] is the `recurrence` of the newest shape scored at t that could raise an alarm
    (a wanted evaluation reaching `gate`, or any score reaching `alarm`; else nan), over the
    stretches every evaluation in the block may use: those starting within the lookback and one
    block before the block, which is all a rebuilt state holds. Up to fill_slots buckets missing
    before a point's bucket are filled in when it arrives (`_filled_value`).

    The level's range: out_level[t] is the mean of the buckets of the last hour_slots, the one
    filling included; out_low and out_high the lowest and highest bucket of the lookback before
    t's block, up to exclusion_slots before the block (`ring_span`: read from the ring once a
    block, so a rebuilt state gives the same); out_beyond how far the level lies outside them
    (`_beyond`), where range_formed[t] (else nan). A point beyond them by more than range_margin
    is evaluated, and its recurrence sought, like a statistical candidate: a daily job a little
    taller than all week is still the daily job."""
    day_slots = 1440.0 / bucket_minutes
    range_block, low, high = math.nan, math.nan, math.nan
    hour_slot, hour_total, hour_count = math.nan, 0.0, 0.0  # the closed buckets of the level's hour
    for t in range(x.shape[0]):
        out_score[t] = math.nan
        out_closed[t] = math.nan
        out_recur[t] = math.nan
        out_beyond[t] = math.nan
        out_low[t] = math.nan
        out_high[t] = math.nan
        out_level[t] = math.nan
        v = x[t]
        if math.isnan(v) or math.isinf(v):
            continue
        now = minutes[t]
        slot = now // bucket_minutes
        if not math.isnan(sc[i, CUR_SLOT]) and slot != sc[i, CUR_SLOT]:
            seen = sc[i, EVAL_N] == sc[i, CUR_N]
            last_slot = sc[i, CUR_SLOT]
            last_value = sc[i, CUR_SUM] / sc[i, CUR_N]
            missing = _gap_to_fill(last_slot, slot, fill_slots)
            closed = _close(values, slots, sums, sc, i, slot, length, lookback_slots, block_slots, cap,
                            typ_halflife_slots)
            if not seen:
                out_closed[t] = closed
                if closed >= alarm:
                    out_recur[t] = recurrence(values, slots, i, int(sc[i, N_BUCKETS]) - 1, length, cap, day_slots,
                                              tol_slots, _rebuilt_from(slot, lookback_slots, block_slots),
                                              max_scale, max_shift)
            for k in range(1, missing + 1):
                # A filled bucket is closed like any other (sums, typical distance) but scores no
                # point: no point fell in it. A gap across a block start recomputed the sums at
                # the closing above, as the first closing of a rebuilt state does; the filled
                # buckets only advance them.
                sc[i, CUR_SLOT] = last_slot + k
                sc[i, CUR_SUM] = _filled_value(last_value, v, k, missing)
                sc[i, CUR_N] = 1.0
                _close(values, slots, sums, sc, i, last_slot + k, length, lookback_slots, block_slots, cap,
                       typ_halflife_slots)
            sc[i, CUR_SLOT] = math.nan
        if math.isnan(sc[i, CUR_SLOT]):
            sc[i, CUR_SLOT] = slot
            sc[i, CUR_SUM] = 0.0
            sc[i, CUR_N] = 0.0
            sc[i, EVAL_N] = -1.0
        sc[i, CUR_SUM] += v
        sc[i, CUR_N] += 1.0
        if not math.isnan(sc[i, LAST_MINUTE]):
            sc[i, LAST_STEP] = max(now - sc[i, LAST_MINUTE], 1.0)
        sc[i, LAST_MINUTE] = now
        block = slot // block_slots
        if block != range_block:
            range_block = block
            start = block * block_slots
            _, _, low, high = ring_span(values, slots, i, int(sc[i, N_BUCKETS]), cap, start - lookback_slots,
                                        start - exclusion_slots)
        out_low[t], out_high[t] = low, high
        if slot != hour_slot:
            hour_slot = slot
            hour_total, hour_count, _, _ = ring_span(values, slots, i, int(sc[i, N_BUCKETS]), cap,
                                                     slot - hour_slots + 1, slot - 1)
        out_level[t] = (hour_total + sc[i, CUR_SUM] / sc[i, CUR_N]) / (hour_count + 1.0)
        if range_formed[t]:
            out_beyond[t] = _beyond(out_level[t], low, high)
        looks_last = sc[i, LAST_STEP] > 0 and (now + sc[i, LAST_STEP]) // bucket_minutes != slot
        beyond = out_beyond[t] > range_margin  # False for nan
        if want[t] or looks_last or beyond:
            out_score[t] = _tentative(values, slots, sums, sc, i, length, lookback_slots, cap)
            sc[i, EVAL_N] = sc[i, CUR_N]
            if (want[t] and out_score[t] >= gate) or out_score[t] >= alarm or beyond:
                out_recur[t] = recurrence(values, slots, i, int(sc[i, N_BUCKETS]), length, cap, day_slots,
                                          tol_slots, _rebuilt_from(slot, lookback_slots, block_slots),
                                          max_scale, max_shift)


@njit(cache=True)
def replay_buckets(values, slots, sc, i, bucket_values, bucket_slots, cap):
    """Rebuild series i's ring from its closed buckets (oldest first) up to a block start: all a
    state carried in memory holds that the block's first closing (a recomputation) reads."""
    n = bucket_values.shape[0]
    for k in range(n):
        _write(values, slots, i, k, bucket_values[k], bucket_slots[k], cap)
    sc[i, N_BUCKETS] = n


@njit(cache=True)
def bucket_means(x, minutes, bucket_minutes, fill_slots):
    """(values, slots) of the closed buckets of one series, summed point by point and with the
    missing buckets filled in exactly as `step_series` does; the last bucket, still filling,
    is left out."""
    size = x.shape[0] * (int(fill_slots) + 1)
    vals = np.empty(size)
    slts = np.empty(size)
    n = 0
    cur, s, c = math.nan, 0.0, 0.0
    for t in range(x.shape[0]):
        v = x[t]
        if math.isnan(v) or math.isinf(v):
            continue
        slot = minutes[t] // bucket_minutes
        if not math.isnan(cur) and slot != cur:
            last_value = s / c
            vals[n] = last_value
            slts[n] = cur
            n += 1
            missing = _gap_to_fill(cur, slot, fill_slots)
            for k in range(1, missing + 1):
                vals[n] = _filled_value(last_value, v, k, missing)
                slts[n] = cur + k
                n += 1
            cur = math.nan
        if math.isnan(cur):
            cur, s, c = slot, 0.0, 0.0
        s += v
        c += 1.0
    return vals[:n], slts[:n]


@njit(cache=True)
def verdicts(x, minutes, stage, steps, level, significant, min_dev, shape_formed, range_formed, gate, alarm, suppress_minutes, quiet_minutes,
             min_gap_minutes, since_a, since_u, s_values, s_slots,
             s_sums, s_scalars, bucket, length, lookback_slots, block_slots, cap, typ_halflife_slots,
             recur_corr, recur_tol_slots, recur_max_scale, recur_max_shift, fill_slots, shape_score, recur,
             fire, sev, hour_slots, exclusion_slots, range_margin, beyond, low,
             high, level_hour):  # pragma: no cover - compiled
    """The combined verdict (detectors.py's docstring) for every series, given the statistical
    stage of each point (0 baseline forming, 1 formed, 2 statistical candidate), whether it is
    `significant` (at least the series' `min_dev` from its baseline; the statistical stage has it
    already), the step since
    the series' previous point and the seed's severity level. since_a and since_u (carried):
    minutes since the series' last alarm, and since its last unusual point (a statistical
    candidate, a shape at the gate's distance or a level beyond its range, whether or not it
    alarmed).
    Here rather than in detectors.py: numba caches a compiled function by its own file only, so
    a caller in another file would keep running an old copy of these functions after they change."""
    n_series, n = x.shape
    closed = np.empty(n)
    for i in range(n_series):
        want = stage[i] == 2
        step_series(s_values, s_slots, s_sums, s_scalars, i, x[i], minutes, want, shape_score[i], closed, recur[i],
                    bucket, length, lookback_slots, block_slots, cap, typ_halflife_slots, gate, alarm, recur_tol_slots,
                    recur_max_scale, recur_max_shift, fill_slots, hour_slots, exclusion_slots, range_margin,
                    range_formed[i], beyond[i], low[i], high[i], level_hour[i])
        for t in range(n):
            v = x[i, t]
            if math.isnan(v) or math.isinf(v):
                continue
            # The point's shape score is its bucket's evaluation, else the score of a bucket it closed;
            # either may raise the alarm on its own.
            novelty = shape_score[i, t]
            if math.isnan(novelty):
                shape_score[i, t] = novelty = closed[t]
            elif not math.isnan(closed[t]):
                novelty = max(novelty, closed[t])
            recurring = recur[i, t] >= recur_corr  # False for nan
            out_of_range = beyond[i, t] > range_margin  # False for nan, as while the range forms
            # With a min_deviation, the shape alone and the range alarm only where the change is
            # that large: the point that far from its baseline, or (for a slide the baseline
            # follows) the last hour's level that far beyond the week's range.
            level_far = min_dev[i] == 0.0 or (not math.isnan(level_hour[i, t]) and (
                level_hour[i, t] - high[i, t] >= min_dev[i] or low[i, t] - level_hour[i, t] >= min_dev[i]))
            warrants_alarm = stage[i, t] > 0 and not recurring and (
                (stage[i, t] == 2 and shape_score[i, t] >= gate)
                or ((significant[i, t] or level_far) and shape_formed[i, t] and not math.isnan(novelty)
                    and novelty >= alarm)
                or (level_far and out_of_range))
            # One alarm per incident: the last alarm's incident is over once the series has gone
            # quiet_minutes without an unusual point; it may then alarm again, min_gap_minutes
            # after the last alarm at the earliest. An incident that never goes quiet alarms again
            # after suppress_minutes.
            armed = since_a[i] >= suppress_minutes or (since_a[i] >= min_gap_minutes and since_u[i] >= quiet_minutes)
            if warrants_alarm and armed:
                fire[i, t] = True
                sev[i, t] = max(level[i, t], 1)
                since_a[i] = 0.0
            else:
                since_a[i] += steps[i, t]
            # Quiet means nothing out of the ordinary: no statistical candidate, no shape at the
            # gate's distance and no level beyond its range, whether or not it would alarm.
            unusual = stage[i, t] == 2 or (not math.isnan(novelty) and novelty >= gate) or out_of_range
            since_u[i] = 0.0 if unusual else since_u[i] + steps[i, t]
