"""Binned Wasserstein distance and KS statistic against scipy on the raw values.

    python bench/wasserstein_accuracy.py            # a few seconds
    python bench/wasserstein_accuracy.py --seeds 50 --bins 10

For normal and lognormal features, a reference of ``--reference`` values and windows of
``--window`` values shifted by 0 to 1 reference sd: the profile is built by the real code
(``profile_from_columns``), the window binned as the accumulators bin it, and the binned
statistics (``wasserstein_parts``, ``ks_numeric``) compared with scipy's
``wasserstein_distance`` and ``ks_2samp`` on the raw values. Prints, per distribution,
the mean and largest error of the Wasserstein distance in reference sd, the median of
its computed bound, and the largest KS gap.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from monitor.core.drift import ks_numeric, wasserstein_parts
from monitor.core.reference import bin_numeric, profile_from_columns

SHIFTS = (0.0, 0.1, 0.25, 0.5, 1.0)


def _one(ref: np.ndarray, win: np.ndarray, bins: int) -> tuple[float, float, float]:
    profile = profile_from_columns({"x": list(ref)}, {"x": "numeric"}, bins=bins).numeric["x"]
    col = bin_numeric(profile.edges, win)
    k = profile.columns
    p = np.bincount(col, minlength=k)[None, :] / len(win)
    p_mean = np.bincount(col, weights=win, minlength=k)[None, :] / len(win)
    total = profile.counts.sum()
    r, r_mean = profile.counts / total, profile.sums / total
    w, bound = wasserstein_parts(p, r, profile.edges, p_mean, r_mean)
    ks = ks_numeric(p, r, profile.edges, p_mean, r_mean)
    sd = float(ref.std())
    error = (stats.wasserstein_distance(ref, win) - float(w[0])) / sd
    return error, float(bound[0]) / sd, float(stats.ks_2samp(ref, win).statistic - ks[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--reference", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=5_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.bins} bins, {args.reference} reference and {args.window} window values, "
          f"{args.seeds} seeds per shift {SHIFTS}")
    print("distribution  W error/sd: mean   max    bound/sd median  KS gap max")
    for dist in ("normal", "lognormal"):
        rows = []
        for shift in SHIFTS:
            for _ in range(args.seeds):
                if dist == "normal":
                    ref = rng.normal(0.0, 1.0, args.reference)
                    win = rng.normal(shift, 1.0 + shift / 2, args.window)
                else:
                    ref = rng.lognormal(0.0, 1.0, args.reference)
                    win = rng.lognormal(shift, 1.0, args.window)
                rows.append(_one(ref, win, args.bins))
        a = np.array(rows)
        print(f"{dist:<12}  {a[:, 0].mean():.4f}  {a[:, 0].max():.4f}  "
              f"{np.median(a[:, 1]):.4f}           {a[:, 2].max():.4f}")


if __name__ == "__main__":
    main()
