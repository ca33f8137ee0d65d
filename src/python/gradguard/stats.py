"""The one statistical test the regression gate needs: one-sided Mann–Whitney U (is ``current`` stochastically
larger than ``baseline``?). Rank-based, so a single outlier repetition on a shared machine cannot make or break a
verdict. For samples of up to EXACT_LIMIT values each the p-value is exact, ties included (the permutation
distribution of U given the tie groups); beyond that the normal approximation with tie and continuity corrections."""
from __future__ import annotations

import math

EXACT_LIMIT = 20  # the exact programme has ~n·2nm states per tie group: instant at 20, slow at 50


def u_statistic(current: list[float], baseline: list[float]) -> float:
    """Number of (current, baseline) pairs with current > baseline, ties counted one half."""
    return sum(1.0 if c > b else 0.5 if c == b else 0.0 for c in current for b in baseline)


def _tie_groups(current: list[float], baseline: list[float]) -> list[int]:
    counts: dict[float, int] = {}
    for v in list(current) + list(baseline):
        counts[v] = counts.get(v, 0) + 1
    return [counts[v] for v in sorted(counts)]


def _exact_tail(n: int, m: int, groups: list[int], twice_u: int) -> float:
    """P(2U >= twice_u) when the n current values are a uniformly random n-subset of the pooled values, whose sorted
    tie groups have the given sizes. Dynamic programme over the groups in increasing order: placing k current values
    in a group of size t (C(t, k) ways) adds 2 for each baseline value below the group and 1 for each tied pair."""
    ways: dict[tuple[int, int], int] = {(0, 0): 1}  # (current values placed, 2U so far) -> number of subsets
    seen = 0
    for t in groups:
        nxt: dict[tuple[int, int], int] = {}
        for (placed, u2), w in ways.items():
            below_baseline = seen - placed
            for k in range(max(0, t - (m - below_baseline)), min(t, n - placed) + 1):
                key = (placed + k, u2 + 2 * k * below_baseline + k * (t - k))
                nxt[key] = nxt.get(key, 0) + w * math.comb(t, k)
        ways = nxt
        seen += t
    hits = sum(w for (placed, u2), w in ways.items() if placed == n and u2 >= twice_u)
    return hits / math.comb(n + m, n)


def mann_whitney_greater(current: list[float], baseline: list[float]) -> float:
    """p-value of H0 "same distribution" against H1 "current tends to be larger"."""
    n, m = len(current), len(baseline)
    if n == 0 or m == 0:
        raise ValueError(f"argument 'current'/'baseline': expected non-empty samples, got {n} and {m} values")
    u = u_statistic(current, baseline)
    groups = _tie_groups(current, baseline)
    if n <= EXACT_LIMIT and m <= EXACT_LIMIT:
        return _exact_tail(n, m, groups, round(2 * u))
    total = n + m
    tie_term = sum(t ** 3 - t for t in groups) / (total * (total - 1))
    var = n * m / 12.0 * ((total + 1) - tie_term)
    if var <= 0:
        return 1.0  # every value equal: no evidence of anything
    z = (u - n * m / 2.0 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def smallest_p(n: int, m: int) -> float:
    """The smallest p-value samples of these sizes can give (all current values above all baseline values)."""
    return 1.0 / math.comb(n + m, n)
