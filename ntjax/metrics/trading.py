"""Trading metrics of per-period returns, positions and trades."""

from __future__ import annotations

import numpy as np
from jax.typing import ArrayLike

from ntjax.metrics._arrays import _pair

# Definitions (DESIGN.md, "Backtest"), for per-period simple returns ``r`` (n periods, ``P`` per
# year) and equity ``E_t = prod_{s<=t} (1 + r_s)`` with ``E_0 = 1``. A ratio whose denominator is
# exactly zero (constant returns, no losing period, no drawdown) is 0.0 when its numerator is 0
# too and +-inf otherwise; a statistic that needs more data than it has (a standard deviation of
# one period, a win rate without closed trades) is NaN.


def _series(values: ArrayLike, what: str = "returns") -> np.ndarray:
    x = np.asarray(values, np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional [n_periods], got shape {x.shape}.")
    return x


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` with the zero-denominator rule above."""
    if np.isnan(numerator) or np.isnan(denominator):
        return float("nan")
    if denominator != 0:
        return float(numerator / denominator)
    if numerator == 0:
        return 0.0
    return float(np.copysign(np.inf, numerator))


def _std(x: np.ndarray) -> float:
    """Sample standard deviation (ddof=1); exactly 0.0 for constant values, NaN below 2."""
    if x.size < 2:
        return float("nan")
    if np.all(x == x[0]):
        return 0.0
    return float(np.std(x, ddof=1))


def equity_curve(returns: ArrayLike) -> np.ndarray:
    """``[n + 1]`` equity ``E_0 = 1, E_t = prod_{s<=t} (1 + r_s)`` of ``[n]`` returns."""
    r = _series(returns)
    return np.concatenate([[1.0], np.cumprod(1.0 + r)])


def total_return(returns: ArrayLike) -> float:
    """``E_n - 1``."""
    return float(equity_curve(returns)[-1] - 1.0)


def cagr(returns: ArrayLike, *, periods_per_year: float = 252) -> float:
    """Compound annual growth rate ``E_n ** (P / n) - 1``; -1 when equity is wiped out
    (``E_n <= 0``), NaN without periods."""
    r = _series(returns)
    if r.size == 0:
        return float("nan")
    final = equity_curve(r)[-1]
    if final <= 0:
        return -1.0
    with np.errstate(over="ignore"):
        return float(np.float64(final) ** (periods_per_year / r.size) - 1.0)


def volatility(returns: ArrayLike, *, periods_per_year: float = 252) -> float:
    """Annualised volatility ``std(r, ddof=1) * sqrt(P)``."""
    return _std(_series(returns)) * float(np.sqrt(periods_per_year))


def sharpe_ratio(
    returns: ArrayLike, *, periods_per_year: float = 252, risk_free: float = 0.0
) -> float:
    """Annualised Sharpe ratio ``mean(r - rf/P) / std(r - rf/P, ddof=1) * sqrt(P)``.

    Args:
      returns: ``[n_periods]`` simple returns.
      periods_per_year: ``P``, e.g. 252 for daily bars.
      risk_free: annual risk-free rate ``rf`` (a fraction).
    """
    excess = _series(returns) - risk_free / periods_per_year
    if excess.size < 2:
        return float("nan")
    return _ratio(float(np.mean(excess)), _std(excess)) * float(np.sqrt(periods_per_year))


def sortino_ratio(returns: ArrayLike, *, periods_per_year: float = 252) -> float:
    """Annualised Sortino ratio ``mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(P)``."""
    r = _series(returns)
    if r.size == 0:
        return float("nan")
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    return _ratio(float(np.mean(r)), downside) * float(np.sqrt(periods_per_year))


def drawdowns(returns: ArrayLike) -> np.ndarray:
    """``[n + 1]`` drawdown ``E_t / max_{s<=t} E_s - 1`` (fractions <= 0), ``t = 0..n``."""
    equity = equity_curve(returns)
    return equity / np.maximum.accumulate(equity) - 1.0


def max_drawdown(returns: ArrayLike) -> float:
    """Maximum drawdown ``min_t (E_t / max_{s<=t} E_s - 1)`` over ``t = 0..n``: a fraction <= 0
    (0.0 for no periods or an equity that never falls)."""
    return float(np.min(drawdowns(returns)))


def calmar_ratio(returns: ArrayLike, *, periods_per_year: float = 252) -> float:
    """``cagr / abs(max_drawdown)``."""
    return _ratio(cagr(returns, periods_per_year=periods_per_year), abs(max_drawdown(returns)))


def trade_runs(positions: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The trades of a position path: maximal runs of periods holding a position of one sign.

    Args:
      positions: ``[n_periods]`` position held over each period (0 is flat; a change of size
        without a change of sign stays within the trade).

    Returns:
      ``(start, stop, side)``, each ``[n_trades]``: the run is periods ``start:stop``; ``side``
      is +1 (long) or -1 (short). A run with ``stop == n_periods`` is still open at the end.
    """
    side = np.sign(_series(positions, "positions"))
    if side.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    edges = np.flatnonzero(side[1:] != side[:-1]) + 1
    start = np.concatenate([[0], edges])
    stop = np.concatenate([edges, [side.size]])
    held = side[start] != 0
    return start[held], stop[held], side[start][held].astype(np.int64)


def trade_returns(
    positions: ArrayLike, returns: ArrayLike, *, include_open: bool = False
) -> np.ndarray:
    """Compounded strategy return of each trade, ``prod(1 + r[start:stop]) - 1``.

    Costs are in ``returns`` where they were paid: entering or resizing a trade in its own
    periods, the exit in the period the position is closed (the next trade's or a flat one).

    Args:
      positions: ``[n_periods]`` position held over each period.
      returns: ``[n_periods]`` strategy returns of those periods.
      include_open: also return the trade still open at the end (marked to market).

    Returns:
      ``[n_trades]`` trade returns, closed trades only unless ``include_open``.
    """
    r = _series(returns)
    if np.shape(positions) != r.shape:
        raise ValueError(f"positions {np.shape(positions)} and returns {r.shape} differ in shape.")
    start, stop, _ = trade_runs(positions)
    if not include_open:
        closed = stop < r.size
        start, stop = start[closed], stop[closed]
    return np.array([np.prod(1.0 + r[a:b]) - 1.0 for a, b in zip(start, stop, strict=True)])


def win_rate(trade_returns: ArrayLike) -> float:
    """Share of trades with a positive return (NaN without trades)."""
    t = _series(trade_returns, "trade returns")
    if t.size == 0:
        return float("nan")
    return float(np.mean(t > 0))


def profit_factor(trade_returns: ArrayLike) -> float:
    """Sum of winning trade returns over the absolute sum of losing ones: inf with wins and no
    losses, 0.0 with losses and no wins, NaN without trades or with only zero-return trades."""
    t = _series(trade_returns, "trade returns")
    wins, losses = float(np.sum(t[t > 0])), float(-np.sum(t[t < 0]))
    if wins == 0 and losses == 0:
        return float("nan")
    return _ratio(wins, losses)


def turnover(positions: ArrayLike, *, periods_per_year: float = 252) -> float:
    """Annualised turnover ``mean(|p_t - p_{t-1}|) * P`` with ``p_{-1} = 0``: equity traded per
    year, in multiples of equity (a daily long/short flip of one unit is ``2 * P``)."""
    p = _series(positions, "positions")
    if p.size == 0:
        return float("nan")
    return float(np.mean(np.abs(np.diff(p, prepend=0.0))) * periods_per_year)


def exposure(positions: ArrayLike) -> float:
    """Share of periods holding a non-zero position."""
    p = _series(positions, "positions")
    if p.size == 0:
        return float("nan")
    return float(np.mean(p != 0))


def directional_accuracy(forecast_returns: ArrayLike, realized_returns: ArrayLike) -> float:
    """Share of periods where the forecast return has the sign of the realised one, over the
    periods whose realised return is not zero (a zero forecast counts as wrong)."""
    f, a = _pair(forecast_returns, realized_returns)
    moved = a != 0
    if not moved.any():
        return float("nan")
    return float(np.mean(np.sign(f[moved]) == np.sign(a[moved])))


def alpha_beta(
    returns: ArrayLike,
    benchmark_returns: ArrayLike,
    *,
    periods_per_year: float = 252,
    risk_free: float = 0.0,
) -> tuple[float, float]:
    """CAPM regression of excess returns on the benchmark's excess returns.

    ``beta = cov(r - rf/P, b - rf/P) / var(b - rf/P)`` and the annualised intercept
    ``alpha = (mean(r - rf/P) - beta * mean(b - rf/P)) * P``; NaN for fewer than two periods or
    a constant benchmark.
    """
    r, b = _pair(returns, benchmark_returns)
    r, b = r - risk_free / periods_per_year, b - risk_free / periods_per_year
    if r.size < 2 or _std(b) == 0:
        return float("nan"), float("nan")
    beta = float(np.cov(r, b, ddof=1)[0, 1] / np.var(b, ddof=1))
    alpha = float((np.mean(r) - beta * np.mean(b)) * periods_per_year)
    return alpha, beta


def information_ratio(
    returns: ArrayLike, benchmark_returns: ArrayLike, *, periods_per_year: float = 252
) -> float:
    """``mean(r - b) / std(r - b, ddof=1) * sqrt(P)``: the Sharpe ratio of the active return."""
    r, b = _pair(returns, benchmark_returns)
    return sharpe_ratio(r - b, periods_per_year=periods_per_year)


def trading_metrics(
    returns: ArrayLike,
    positions: ArrayLike,
    *,
    asset_returns: ArrayLike | None = None,
    forecast_returns: ArrayLike | None = None,
    periods_per_year: float = 252,
    risk_free: float = 0.0,
) -> dict[str, float]:
    """Every trading metric of a backtest at once.

    Args:
      returns: ``[n_periods]`` strategy returns (after costs).
      positions: ``[n_periods]`` position held over each period.
      asset_returns: ``[n_periods]`` returns of the traded asset, i.e. of buy-and-hold: adds
        ``benchmark_*``, ``alpha``, ``beta``, ``information_ratio``.
      forecast_returns: ``[n_periods]`` forecast returns: adds ``directional_accuracy``
        (against ``asset_returns``).
      periods_per_year: ``P``.
      risk_free: annual risk-free rate (Sharpe, alpha and beta).

    Returns:
      ``total_return, cagr, volatility, sharpe, sortino, max_drawdown, calmar, win_rate,
      profit_factor, n_trades`` (open one included), ``n_closed_trades, turnover, exposure,
      n_periods`` and the benchmark entries above.
    """
    r = _series(returns)
    yearly = {"periods_per_year": periods_per_year}
    closed = trade_returns(positions, r)
    result = {
        "total_return": total_return(r),
        "cagr": cagr(r, **yearly),
        "volatility": volatility(r, **yearly),
        "sharpe": sharpe_ratio(r, risk_free=risk_free, **yearly),
        "sortino": sortino_ratio(r, **yearly),
        "max_drawdown": max_drawdown(r),
        "calmar": calmar_ratio(r, **yearly),
        "win_rate": win_rate(closed),
        "profit_factor": profit_factor(closed),
        "n_trades": int(trade_runs(positions)[0].size),
        "n_closed_trades": int(closed.size),
        "turnover": turnover(positions, **yearly),
        "exposure": exposure(positions),
        "n_periods": int(r.size),
    }
    if asset_returns is not None:
        b = _series(asset_returns)
        alpha, beta = alpha_beta(r, b, risk_free=risk_free, **yearly)
        result |= {
            "benchmark_total_return": total_return(b),
            "benchmark_cagr": cagr(b, **yearly),
            "benchmark_sharpe": sharpe_ratio(b, risk_free=risk_free, **yearly),
            "benchmark_max_drawdown": max_drawdown(b),
            "alpha": alpha,
            "beta": beta,
            "information_ratio": information_ratio(r, b, **yearly),
        }
        if forecast_returns is not None:
            result["directional_accuracy"] = directional_accuracy(forecast_returns, b)
    elif forecast_returns is not None:
        raise ValueError("directional_accuracy needs asset_returns (the realised returns).")
    return result
