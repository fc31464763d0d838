"""Implied volatility + five greeks: spy_pipeline.domain.black_scholes against py_vollib per row and pyvolr (Rust).

Rows are SPY-like: spot ≈ 600, 1 minute to 60 days to expiry, strikes up to 3 standard deviations (sigma·√T) in
or out of the money, volatility 8% to 60%, calls and puts, r and q scalars, prices from the model (unrounded).
Ours is timed warm (median and best of repeats) with numba's threads and with one; the time to compile from
scratch and the first call of a new process (kernels loaded from numba's cache) are measured in subprocesses and
reported separately. py_vollib is timed per row (what a pandas `apply` does) on a sample, and is the accuracy oracle on
that sample: implied volatilities, and greeks at the same volatility. pyvolr is timed with int8 ±1 flags, its
fast path. Two yardsticks share the run: the module as it was before the vector pass (BASELINE_COMMIT, read
from git, timed the same way, its results compared row by row), and the best rate of a plain `np.exp` over as
many elements (numpy's SIMD exp, one thread: what the hardware does for one transcendental per row). Figures are
merged into bench/results.json under "greeks".
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numba
import numpy as np

from spy_pipeline.domain import black_scholes as bs
from spy_pipeline_tests.bench.results import merge_results

ROWS = 1_000_000
SAMPLE = 20_000
REPEATS = 5
MINUTE = 1.0 / (365 * 24 * 60)
RATE, DIVIDEND_YIELD = 0.045, 0.013
REPO_ROOT = Path(__file__).resolve().parents[2]
GOAL_ROWS_PER_S = 8_000_000  # issue #16: IV + five greeks on two cores
BASELINE_COMMIT = "ef8e59d4aea41e0c92d3a59de88778aa438daf53"  # black_scholes before the vector pass (one row at a time)
FIRST_CALL = (
    "import time; t = time.perf_counter(); from spy_pipeline.domain import black_scholes as bs; "
    "i = time.perf_counter(); bs.implied_vol_and_greeks(2.4, 49.0, 50.0, 0.38, 0.05, 0.0, True); "
    "f = time.perf_counter(); bs.implied_vol_and_greeks([2.4] * 10_000, 49.0, 50.0, 0.38, 0.05, 0.0, True); "
    "print(i - t, f - i, time.perf_counter() - f)"
)


def spy_like_rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    spot = 600.0 * np.exp(rng.normal(0.0, 0.02, n))
    years = np.exp(rng.uniform(math.log(MINUTE), math.log(60 / 365), n))
    sigma = rng.uniform(0.08, 0.60, n)
    strike = np.round(spot * np.exp(rng.uniform(-3.0, 3.0, n) * sigma * np.sqrt(years)))
    is_call = rng.random(n) < 0.5
    value = bs.price(spot, strike, years, RATE, DIVIDEND_YIELD, sigma, is_call)
    return {"price": value, "S": spot, "K": strike, "T": years, "sigma": sigma, "is_call": is_call}


def _seconds(run: Callable[[], object], repeats: int = REPEATS) -> tuple[float, float]:
    """Median and best of `repeats` runs: on a shared machine the best shows what the code can do."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def _ours(rows: dict[str, np.ndarray], module: ModuleType = bs) -> bs.GreeksResult:
    return module.implied_vol_and_greeks(
        rows["price"], rows["S"], rows["K"], rows["T"], RATE, DIVIDEND_YIELD, rows["is_call"]
    )


def _rates(rows: dict[str, np.ndarray], modules: list[ModuleType]) -> list[dict[str, float]]:
    """Rows per second of each module, median and best of REPEATS, with numba's threads and with one. The
    modules take turns within each repeat, so that a shared machine's load falls on them alike; on one thread
    the best rate by the thread's CPU time is kept too (what the code does when it has the core)."""
    n = rows["price"].size
    threads = numba.get_num_threads()
    wall: dict[tuple[int, int], list[float]] = {}
    cpu: dict[int, list[float]] = {}
    for module in modules:
        _ours(rows, module)  # warm
    for thread_count in (threads, 1):
        numba.set_num_threads(thread_count)
        try:
            for _ in range(REPEATS):
                for k, module in enumerate(modules):
                    started, started_cpu = time.perf_counter(), time.thread_time()
                    _ours(rows, module)
                    wall.setdefault((k, thread_count), []).append(time.perf_counter() - started)
                    if thread_count == 1:
                        cpu.setdefault(k, []).append(time.thread_time() - started_cpu)
        finally:
            numba.set_num_threads(threads)
    return [{"rows_per_s": n / statistics.median(wall[k, threads]), "best_rows_per_s": n / min(wall[k, threads]),
             "single_thread_rows_per_s": n / statistics.median(wall[k, 1]),
             "single_thread_best_rows_per_s": n / min(wall[k, 1]),
             "single_thread_best_cpu_rows_per_s": n / min(cpu[k])} for k in range(len(modules))]


def _baseline_module() -> ModuleType | str:
    """black_scholes at BASELINE_COMMIT, from git, as a module of its own (numba caches it beside the copy in
    the temp directory); a sentence saying why not when git or the commit is not there."""
    copy = Path(tempfile.gettempdir()) / "spy_pipeline_bench" / f"black_scholes_{BASELINE_COMMIT[:12]}.py"
    if not copy.exists():
        shown = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:spy_pipeline/domain/black_scholes.py"],
                               cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        if shown.returncode != 0:
            return f"git show {BASELINE_COMMIT[:12]} failed: {shown.stderr.strip() or shown.returncode}"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location(copy.stem, copy)
    module = importlib.util.module_from_spec(spec)
    sys.modules[copy.stem] = module  # numba's cache records the module by name and imports it when loading
    spec.loader.exec_module(module)
    return module


def _against_baseline(result: bs.GreeksResult, before: bs.GreeksResult) -> dict[str, float | int]:
    """Rows whose reason code changed, and the largest changes of IV and greeks where both are OK."""
    both = (result.reason == bs.OK) & (before.reason == bs.OK)
    changes: dict[str, float | int] = {"reason_mismatches": int((result.reason != before.reason).sum())}
    for field in result._fields[:-1]:
        changes[f"max_abs_change_{field}"] = float(np.abs(getattr(result, field) - getattr(before, field))[both].max())
    return changes


def _np_exp_rate(n: int) -> float:
    """Elements per second of np.exp over n doubles into a preallocated array, best of REPEATS."""
    values = np.random.default_rng(2).uniform(-5.0, 5.0, n)
    out = np.empty_like(values)
    np.exp(values, out=out)
    return n / _seconds(lambda: np.exp(values, out=out))[1]


def _first_call_in_new_process(cache_dir: str | None) -> dict[str, float]:
    """Import, first 1-row call, first 10k-row (threaded) call, in seconds, in a fresh interpreter."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir  # empty: numba compiles everything
    done = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True)
    imported, first, threaded = (float(x) for x in done.stdout.split())
    return {"import_s": imported, "first_call_s": first, "first_threaded_call_s": threaded}


def _py_vollib_per_row(rows: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
    """Rows per second for IV + five greeks, one row at a time, and the implied volatilities (NaN: no answer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from py_vollib.black_scholes_merton.greeks import analytical
        from py_vollib.black_scholes_merton.implied_volatility import implied_volatility
    n = rows["price"].size
    ivs = np.full(n, np.nan)
    started = time.perf_counter()
    for i in range(n):
        flag = "c" if rows["is_call"][i] else "p"
        S, K, T = rows["S"][i], rows["K"][i], rows["T"][i]
        try:
            iv = implied_volatility(rows["price"][i], S, K, T, RATE, DIVIDEND_YIELD, flag)
        except Exception:  # vollib's "below intrinsic" / "above maximum"
            continue
        for greek in (analytical.delta, analytical.gamma, analytical.theta, analytical.vega, analytical.rho):
            greek(flag, S, K, T, RATE, iv, DIVIDEND_YIELD)
        ivs[i] = iv
    return n / (time.perf_counter() - started), ivs


def _py_vollib_greeks_error(rows: dict[str, np.ndarray], result: bs.GreeksResult) -> float:
    """Largest difference from py_vollib's analytical greeks at our implied volatility."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from py_vollib.black_scholes_merton.greeks import analytical
    ours = {"delta": result.delta, "gamma": result.gamma, "theta": result.theta_per_day,
            "vega": result.vega_per_point, "rho": result.rho_per_point}
    worst = 0.0
    for i in np.flatnonzero(result.reason == bs.OK):
        flag = "c" if rows["is_call"][i] else "p"
        args = (flag, rows["S"][i], rows["K"][i], rows["T"][i], RATE, result.iv[i], DIVIDEND_YIELD)
        for name, values in ours.items():
            worst = max(worst, abs(getattr(analytical, name)(*args) - values[i]))
    return worst


def _pyvolr(rows: dict[str, np.ndarray], sample: dict[str, np.ndarray]) -> dict[str, object]:
    try:
        from pyvolr import bs as pyvolr_bs
    except ImportError as exc:
        return {"available": False, "why": f"{exc} (pip install -e '.[bench]')"}
    import pyvolr

    def run(r: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        flags = np.where(r["is_call"], 1, -1).astype(np.int8)
        iv = pyvolr_bs.implied_vol(r["price"], flags, r["S"], r["K"], r["T"], RATE, DIVIDEND_YIELD, on_error="ignore")
        return iv, pyvolr_bs.greeks(flags, r["S"], r["K"], r["T"], RATE, iv, DIVIDEND_YIELD)

    run(sample)
    median_s, best_s = _seconds(lambda: run(rows))
    iv, _ = run(sample)
    n = rows["price"].size
    return {"available": True, "version": pyvolr.__version__, "rows_per_s": n / median_s,
            "best_rows_per_s": n / best_s, "sample_iv": iv}


def _iv_errors(ivs: np.ndarray, oracle: np.ndarray, rows: dict[str, np.ndarray]) -> dict[str, float]:
    """Max abs difference from py_vollib where both answer: all rows, and rows whose price pins sigma to 1e-9."""
    from py_vollib.black_scholes_merton.greeks import analytical

    both = np.isfinite(ivs) & (oracle > 0)
    error = np.abs(ivs - oracle)
    scale = rows["S"] + rows["K"]  # bounds the rounding of a price and of its intrinsic value
    vega = np.array([analytical.vega("c", s, k, t, RATE, v, DIVIDEND_YIELD) if v > 0 else 0.0
                     for s, k, t, v in zip(rows["S"], rows["K"], rows["T"], oracle, strict=True)]) / 0.01
    well_posed = both & (np.finfo(float).eps * scale < 1e-9 * vega)
    return {
        "rows_compared": int(both.sum()),
        "max_abs_iv_error": float(error[both].max()),
        "well_posed_rows": int(well_posed.sum()),
        "max_abs_iv_error_well_posed": float(error[well_posed].max()),
    }


def main() -> None:
    rows = spy_like_rows(ROWS)
    _ours(rows)  # warm: compiles, or loads numba's cache
    threads = numba.get_num_threads()
    load_before = os.getloadavg()[0]
    result = _ours(rows)
    baseline = _baseline_module()
    if isinstance(baseline, ModuleType):
        rates, before_rates = _rates(rows, [bs, baseline])
        before_changes = _against_baseline(result, _ours(rows, baseline))
    else:
        (rates,), before_rates, before_changes = _rates(rows, [bs]), None, {}
    ours_rate, single_rate = rates["rows_per_s"], rates["single_thread_rows_per_s"]
    ours_best, single_best = rates["best_rows_per_s"], rates["single_thread_best_rows_per_s"]
    exp_rate = _np_exp_rate(ROWS)

    pick = np.random.default_rng(1).choice(ROWS, SAMPLE, replace=False)
    sample = {k: v[pick] for k, v in rows.items()}
    vollib_rate, oracle = _py_vollib_per_row(sample)
    ours_sample = _ours(sample)
    ours_errors = _iv_errors(np.where(ours_sample.reason == bs.OK, ours_sample.iv, np.nan), oracle, sample)
    greeks_error = _py_vollib_greeks_error(sample, ours_sample)
    peer = _pyvolr(rows, sample)
    cached = _first_call_in_new_process(None)
    with tempfile.TemporaryDirectory() as empty_cache:
        compile_cold = _first_call_in_new_process(empty_cache)

    reasons = np.bincount(result.reason, minlength=len(bs.REASONS))
    print(f"implied volatility + 5 greeks, {ROWS:,} SPY-like rows ({threads} numba threads, "
          f"{numba.threading_layer()} layer, {os.cpu_count()} CPUs, load average {load_before:.2f} before; "
          f"median and best of {REPEATS}):")
    print(f"  {'':28s} {'rows/s':>12s} {'best rows/s':>12s} {'vs py_vollib':>13s} {'vs pyvolr':>10s} "
          f"{'max |IV err|':>13s}")
    pyvolr_rate = peer.get("rows_per_s")

    def line(name: str, rate: float, best: float | None, iv_error: float | None) -> None:
        versus_pyvolr = f"{rate / pyvolr_rate:9.2f}x" if pyvolr_rate else f"{'-':>10s}"
        err = f"{iv_error:13.1e}" if iv_error is not None else f"{'-':>13s}"
        best_text = f"{best:12,.0f}" if best else f"{'-':>12s}"
        print(f"  {name:28s} {rate:12,.0f} {best_text} {rate / vollib_rate:12.0f}x {versus_pyvolr} {err}")

    line(f"ours, {threads} threads", ours_rate, ours_best, ours_errors["max_abs_iv_error_well_posed"])
    line("ours, 1 thread", single_rate, single_best, ours_errors["max_abs_iv_error_well_posed"])
    if before_rates:
        line(f"before ({BASELINE_COMMIT[:7]}), {threads} threads", before_rates["rows_per_s"],
             before_rates["best_rows_per_s"], None)
        line(f"before ({BASELINE_COMMIT[:7]}), 1 thread", before_rates["single_thread_rows_per_s"],
             before_rates["single_thread_best_rows_per_s"], None)
    line(f"py_vollib per row ({SAMPLE:,})", vollib_rate, None, None)
    pyvolr_errors = None
    if peer["available"]:
        pyvolr_errors = _iv_errors(peer["sample_iv"], oracle, sample)
        line(f"pyvolr {peer['version']} (int8 flags)", pyvolr_rate, peer["best_rows_per_s"],
             pyvolr_errors["max_abs_iv_error_well_posed"])
    else:
        print(f"  pyvolr: not importable: {peer['why']}")
    print(f"  IV error vs py_vollib on {SAMPLE:,} rows: {ours_errors['max_abs_iv_error_well_posed']:.1e} on the "
          f"{ours_errors['well_posed_rows']:,} whose price pins sigma to 1e-9; "
          f"{ours_errors['max_abs_iv_error']:.1e} over all {ours_errors['rows_compared']:,} (hard rows: time "
          f"value lost in the price's rounding)")
    if pyvolr_errors:
        print(f"  pyvolr on the same rows: {pyvolr_errors['max_abs_iv_error_well_posed']:.1e} well-posed, "
              f"{pyvolr_errors['max_abs_iv_error']:.1e} over all")
    print(f"  greeks vs py_vollib analytical at the same sigma: max abs error {greeks_error:.1e}")
    print(f"  goal {GOAL_ROWS_PER_S / 1e6:.0f}M rows/s on {threads} threads: median {ours_rate / GOAL_ROWS_PER_S:.2f}x "
          f"of it, best {ours_best / GOAL_ROWS_PER_S:.2f}x; yardstick np.exp (1 thread, best) "
          f"{exp_rate:,.0f} elements/s: a row (1 thread, best) costs the time of {exp_rate / single_best:.0f} np.exp")
    if before_rates:
        print(f"  vs before ({BASELINE_COMMIT[:7]}): {ours_rate / before_rates['rows_per_s']:.2f}x on {threads} "
              f"threads, {single_rate / before_rates['single_thread_rows_per_s']:.2f}x on 1 (medians), "
              f"{rates['single_thread_best_cpu_rows_per_s'] / before_rates['single_thread_best_cpu_rows_per_s']:.2f}x "
              f"by CPU time on 1 ({rates['single_thread_best_cpu_rows_per_s']:,.0f} vs "
              f"{before_rates['single_thread_best_cpu_rows_per_s']:,.0f} rows per CPU-second); "
              f"{before_changes['reason_mismatches']} reason codes differ; largest change where both OK: iv "
              f"{before_changes['max_abs_change_iv']:.1e}, delta {before_changes['max_abs_change_delta']:.1e}")
    else:
        print(f"  before: not measured ({baseline})")
    print(f"  reasons on {ROWS:,} rows: " + ", ".join(f"{bs.REASONS[c].split(':')[0]} {n:,}"
                                                     for c, n in enumerate(reasons) if n))
    print(f"  compile from scratch (new process, empty numba cache): first call {compile_cold['first_call_s']:.2f} s"
          f" + threaded kernel {compile_cold['first_threaded_call_s']:.2f} s")
    print(f"  new process, numba cache warm: import {cached['import_s']:.2f} s, first call "
          f"{cached['first_call_s']:.2f} s, first threaded call {cached['first_threaded_call_s']:.2f} s")

    merge_results("greeks", {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": ROWS,
        "threads": threads,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "ours_rows_per_s": ours_rate,
        "ours_best_rows_per_s": ours_best,
        "ours_single_thread_rows_per_s": single_rate,
        "ours_single_thread_best_rows_per_s": single_best,
        "ours_single_thread_best_cpu_rows_per_s": rates["single_thread_best_cpu_rows_per_s"],
        "threading_layer": numba.threading_layer(),
        "goal_rows_per_s": GOAL_ROWS_PER_S,
        "ratio_vs_goal": ours_rate / GOAL_ROWS_PER_S,
        "best_ratio_vs_goal": ours_best / GOAL_ROWS_PER_S,
        "np_exp_best_elements_per_s": exp_rate,
        "before": (
            {"commit": BASELINE_COMMIT, **before_rates, **before_changes,
             "speedup": ours_rate / before_rates["rows_per_s"],
             "single_thread_speedup": single_rate / before_rates["single_thread_rows_per_s"],
             "single_thread_cpu_speedup": rates["single_thread_best_cpu_rows_per_s"]
             / before_rates["single_thread_best_cpu_rows_per_s"]}
            if before_rates else {"available": False, "why": baseline}
        ),
        "py_vollib_per_row_rows_per_s": vollib_rate,
        "ratio_vs_py_vollib": ours_rate / vollib_rate,
        "pyvolr": (
            {"version": peer["version"], "rows_per_s": pyvolr_rate, "best_rows_per_s": peer["best_rows_per_s"],
             "ratio_ours_vs_pyvolr": ours_rate / pyvolr_rate, **(pyvolr_errors or {})}
            if peer["available"] else {"available": False, "why": peer["why"]}
        ),
        "iv_error_vs_py_vollib": {"sample_rows": SAMPLE, **ours_errors},
        "greeks_max_abs_error_vs_py_vollib": greeks_error,
        "reasons": {bs.REASONS[c]: int(n) for c, n in enumerate(reasons)},
        "compile_from_scratch_s": compile_cold,
        "new_process_cached_s": cached,
        "note": "rates (median of repeats; best alongside) exclude warm-up; py_vollib timed per row (IV + 5 greeks) "
                "on the sample; pyvolr with int8 flags; 'before' is black_scholes at its commit, timed alike; "
                "the machine is shared, see load_average_before",
    })


if __name__ == "__main__":
    main()
