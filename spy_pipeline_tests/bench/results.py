"""bench/results.json at the repo root: each benchmark's figures under its own key, merged atomically, with the
machine that measured them (the figures move with the CPU far more than with the code: the greeks' rows/s,
for one, went 2.6x between a Zen 1 core with AVX2 at half width and a Xeon with AVX-512)."""

import json
import os
import platform
import resource
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results.json"


def merge_results(key: str, figures: dict[str, object]) -> None:
    """Replace one benchmark's figures, keeping the others'."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = json.loads(RESULTS.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        results = {}
    results[key] = figures
    results["machine"] = machine()
    with tempfile.NamedTemporaryFile("w", dir=RESULTS.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(results, tmp, indent=2, sort_keys=True)
        tmp.write("\n")
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile creates 0600
    os.replace(tmp.name, RESULTS)


SIMD_LEVELS = ("avx512f", "avx2", "avx", "sse4_2", "asimd")  # widest first


def machine() -> dict[str, object]:
    """The CPU the figures come from: model, cores this process may use, and its widest SIMD level."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() == "model name":
                    model = value.strip()
                elif name.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)),
            "simd": next((level for level in SIMD_LEVELS if level in flags), "unknown")}


def machine_line() -> str:
    about = machine()
    return f"machine: {about['cpu']}, {about['cores']} cores, widest SIMD {about['simd']}"


def cpu_seconds(children: bool = False) -> float:
    """CPU seconds (user + system, all threads) of this process, or with `children` of the child processes it
    has waited for (and theirs). A shared machine's load inflates wall seconds far more than CPU seconds, so
    the two together tell a slow run from a crowded one."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
