"""Percentiles as k6 reports them, so that the bench's figures and k6's agree."""
import math


def percentile(sorted_values, q):
    """The `q` quantile (0..1) of non-empty, sorted `sorted_values`: k6's method, linear
    interpolation between the closest ranks."""
    k = (len(sorted_values) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)
