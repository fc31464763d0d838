"""The `spy-pipeline` command: `run` (the main backfill), `status` (what the Dagster instance holds),
`report` (the scanner's figures over a range of days), `docs` (the README's generated sections), `simulate`
(a replayed streaming day), `schema baseline` (the source-schema baselines) and `sandbox serve`."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
from pathlib import Path

from spy_pipeline.app.docs import DocsError
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.settings import ConfigError, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spy-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="backfill every asset for the last N trading days up to an end date")
    run.add_argument("--end", help="last day, YYYY-MM-DD (default: SPY_PIPELINE_RUN_END_DATE)")
    run.add_argument("--days", type=int, help="number of trading days (default: SPY_PIPELINE_RUN_DAYS)")
    commands.add_parser(
        "status", help="partitions materialized per asset, failed asset checks, last run per job (DAGSTER_HOME)"
    )
    report = commands.add_parser(
        "report", help="the scanner's eight summary figures and events by hour (ET) over a range of days (data dir)"
    )
    report.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    report.add_argument("--end", required=True, help="last day, YYYY-MM-DD")
    report.add_argument("--trigger-pct", type=float, default=20.0, help="the trigger options_movement used (20)")
    docs = commands.add_parser(
        "docs", help="rewrite the generated sections of README.md (datasets, asset graph, CLI reference) and "
        "data/README.md (dataset layout) from the code"
    )
    docs.add_argument("--check", action="store_true", help="change nothing; exit 1 if a section is stale")
    docs.add_argument("--readme", default="README.md", help="the README to rewrite or check")
    simulate = commands.add_parser(
        "simulate", help="replay a past trading day through the sandbox WebSocket and the streaming session job"
    )
    simulate.add_argument("--date", required=True, help="trading day to replay, YYYY-MM-DD")
    simulate.add_argument("--speed", type=float, default=60.0, help="market seconds per wall second, 1-600 (60)")
    simulate.add_argument("--start-at", default="09:25", help="market time (ET) the replay starts at (09:25)")
    simulate.add_argument(
        "--drop-every", type=int, help="drop each WebSocket connection after N data frames (a frame: a minute's events)"
    )
    simulate.add_argument(
        "--from-lake", action="store_true", help="replay the day recorded in the data dir (its raw partitions, from "
        "Polygon, Flat Files or the sandbox) instead of the synthetic market; never calls Polygon, key or not"
    )
    schema = commands.add_parser(
        "schema", help="the source-schema baselines that Polygon's answers are checked against"
    )
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    baseline = schema_commands.add_parser(
        "baseline", help="re-capture the baselines from a live run (the sandbox; Polygon with POLYGON_API_KEY), "
                         "show the diff, and write them after asking",
    )
    baseline.add_argument("--date", help="trading day to capture, YYYY-MM-DD (default: SPY_PIPELINE_RUN_END_DATE)")
    baseline.add_argument("--yes", action="store_true", help="write without asking")
    baseline.add_argument("--from-spec", metavar="DIR",
                          help="rewrite them from Polygon's OpenAPI spec in DIR (rest.json, websocket.json) instead")
    baseline.add_argument("--dir", help="the baselines folder (default: the package's polygon/baselines)")
    sandbox = commands.add_parser("sandbox", help="the Polygon-compatible sandbox")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    serve = sandbox_commands.add_parser("serve", help="serve the sandbox on 127.0.0.1 until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8765, help="TCP port to listen on")
    serve.add_argument("--api-key", default="sandbox", help="the key clients must send (default: sandbox)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "status":
            return _status()
        if args.command == "report":
            return _report(args)
        if args.command == "docs":
            return _docs(args)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "schema":
            return _schema_baseline(args)
        return _serve(args)
    except (ConfigError, cal.TradingCalendarError, DocsError) as exc:
        print(f"spy-pipeline: {exc}", file=sys.stderr)
        return 2


def _simulate(args: argparse.Namespace) -> int:
    from spy_pipeline.app.runner import ensure_dagster_home
    from spy_pipeline.app.simulate import simulate
    from spy_pipeline.io.lake_replay import MissingInputsError
    from spy_pipeline.logs import configure_logging

    settings = load_settings()
    if not settings.uses_embedded_sandbox and not args.from_lake:
        raise ConfigError("simulate replays the embedded sandbox: unset POLYGON_API_KEY (and POLYGON_BASE_URL), "
                          "or replay a recorded day with --from-lake")
    if not 1 <= args.speed <= 600:
        raise ConfigError(f"--speed must be between 1 and 600, got {args.speed:g}")
    if args.drop_every is not None and args.drop_every < 1:
        raise ConfigError(f"--drop-every must be at least 1, got {args.drop_every}")
    try:
        start = dt.time.fromisoformat(args.start_at)
    except ValueError:
        raise ConfigError(f"--start-at must be a time of day HH:MM (ET), got {args.start_at!r}") from None
    key = settings.polygon_api_key.get_secret_value() if settings.polygon_api_key else None
    configure_logging(settings.log_level, settings.log_format, secrets=[key])
    day = cal.require_trading_day(cal.parse_date(args.date))
    home = ensure_dagster_home(Path.cwd())
    bounds = cal.session_bounds(day)
    if not bounds.pre_market_open <= dt.datetime.combine(day, start, cal.NEW_YORK) < bounds.close:
        raise ConfigError(f"--start-at {args.start_at} is outside {day}'s streaming hours (pre-market open to close)")
    data_dir = settings.resolved_data_dir if settings.data_dir_is_local else settings.data_dir
    source = f"the day recorded in {data_dir}" if args.from_lake else "the sandbox's synthetic market"
    print(f"spy_pipeline: replaying {day} from {args.start_at} ET at {args.speed:g}x through the streaming session, "
          f"from {source}")
    try:
        result = simulate(day, args.speed, args.start_at, args.drop_every, from_lake=args.from_lake)
    except MissingInputsError as exc:
        print(f"spy-pipeline: --from-lake: {exc}", file=sys.stderr)
        return 1
    print(f"Dagster runs {', '.join(result.run_ids)} {'succeeded' if result.success else 'FAILED'} "
          f"in {result.seconds:.1f} s:")
    print("\n".join(result.lines))
    print(f"Data under {data_dir}/stream and "
          f"intraday/; run history in {home}: `make dev` shows it at http://127.0.0.1:3000")
    return 0 if result.success else 1


def _schema_baseline(args: argparse.Namespace) -> int:
    from spy_pipeline.app import schema
    from spy_pipeline.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format,
                      secrets=[settings.polygon_api_key.get_secret_value() if settings.polygon_api_key else None])
    folder = Path(args.dir) if args.dir else schema.BASELINE_DIR
    if args.from_spec:
        spec_dir = Path(args.from_spec)
        if not (spec_dir / "rest.json").is_file() or not (spec_dir / "websocket.json").is_file():
            raise ConfigError(f"--from-spec {spec_dir}: needs rest.json and websocket.json")
        proposals = schema.spec_proposals(spec_dir, folder)
    else:
        day = cal.require_trading_day(cal.parse_date(args.date) if args.date else settings.run_end_date)
        source = "the embedded Polygon sandbox" if settings.uses_embedded_sandbox else "Polygon"
        print(f"capturing what {source} sends for {day}...")
        proposals = schema.live_proposals(schema.capture_live(settings, day), folder, f"live capture, {day}")
    changed = [p for p in proposals if p.diff]
    for proposal in changed:
        print(f"{proposal.endpoint}:")
        print("\n".join(f"  {line}" for line in proposal.diff))
    if not changed:
        print(f"{len(proposals)} baselines up to date in {folder}")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"{len(changed)} baseline(s) would change: rerun with --yes to write them", file=sys.stderr)
            return 1
        if input(f"write {len(changed)} baseline(s) to {folder}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing written")
            return 1
    for path in schema.write(changed, folder):
        print(f"wrote {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from spy_pipeline.app.runner import closing_lines, ensure_dagster_home, run_backfill
    from spy_pipeline.logs import configure_logging

    settings = load_settings()
    key = settings.polygon_api_key.get_secret_value() if settings.polygon_api_key else None
    configure_logging(settings.log_level, settings.log_format, secrets=[key])
    end = cal.parse_date(args.end) if args.end else settings.run_end_date
    days = args.days if args.days is not None else settings.run_days
    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}")
    home = ensure_dagster_home(Path.cwd())
    source = (
        "the embedded Polygon sandbox" if settings.uses_embedded_sandbox else settings.polygon_base_url or "Polygon"
    )
    print(f"spy_pipeline: backfilling {days} trading day(s) up to {end} from {source}")
    data_dir = settings.resolved_data_dir if settings.data_dir_is_local else str(settings.data_dir)
    summary = run_backfill(end, days, data_dir, progress=lambda line: print(line, flush=True))
    status = "succeeded" if summary.success else "FAILED"
    print(
        f"Dagster runs {', '.join(summary.run_ids)} {status} in {summary.seconds:.1f} s for "
        f"{len(summary.partitions)} partitions ({summary.partitions[0]} to {summary.partitions[-1]}):"
    )
    print("\n".join(summary.lines))
    print("\n".join(closing_lines(summary, data_dir, home)))
    return 0 if summary.success else 1


def _status() -> int:
    from spy_pipeline.app.status import report_status

    print(report_status(Path.cwd()))
    return 0


def _report(args: argparse.Namespace) -> int:
    from spy_pipeline.app.report import load_range, render

    start, end = cal.parse_date(args.start), cal.parse_date(args.end)
    if not args.trigger_pct > 0:
        raise ConfigError(f"--trigger-pct must be positive, got {args.trigger_pct:g}")
    settings = load_settings()
    data_dir = settings.resolved_data_dir if settings.data_dir_is_local else str(settings.data_dir)
    report = load_range(data_dir, start, end, args.trigger_pct)
    print(render(report, str(data_dir)))
    return 0 if report.summary is not None else 1


def _docs(args: argparse.Namespace) -> int:
    from spy_pipeline.app import docs

    readme = Path(args.readme)
    if not readme.is_file():
        raise DocsError(f"{readme} does not exist: run from the repository root or pass --readme")
    files = {readme: docs.generated_sections(build_parser())}
    data_readme = docs.data_readme_of(readme)
    if data_readme.is_file():  # a README checked on its own (a copy elsewhere) has none next to it
        files[data_readme] = docs.data_readme_sections()
    if args.check:
        stale = {path: names for path, sections in files.items() if (names := docs.check_readme(path, sections))}
        for path, names in stale.items():
            print(
                f"spy-pipeline: {path} is stale: generated section(s) {', '.join(names)} differ from the code; "
                "run `spy-pipeline docs` (`.venv/bin/spy-pipeline docs`) and commit the result",
                file=sys.stderr,
            )
        if stale:
            return 1
        for path in files:
            print(f"{path}: generated sections up to date")
        return 0
    for path, sections in files.items():
        rewritten = docs.update_readme(path, sections)
        print(f"{path}: rewrote {', '.join(rewritten)}" if rewritten else f"{path}: generated sections up to date")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from spy_pipeline.sandbox.server import SandboxServer

    server = SandboxServer(api_key=args.api_key, host=args.host, port=args.port)
    print(f"Polygon sandbox on http://{args.host}:{args.port} (key {args.api_key!r}); Ctrl-C stops it.")
    print(f"Point the pipeline at it: POLYGON_BASE_URL=http://{args.host}:{args.port} POLYGON_API_KEY=<key>")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
