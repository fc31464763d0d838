"""training_dataset and features: what models train on, built from consolidated."""

import time

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type
from dagster_pandas.constraints import ColumnDTypeInSetConstraint, NonNullableColumnConstraint
from pydantic import Field

from spy_pipeline.defs.checks import Check, CheckStep, checked_days
from spy_pipeline.defs.metadata import dataset_metadata, markdown_table, timing
from spy_pipeline.defs.partial_ranges import file_metadata, finish_range
from spy_pipeline.defs.processed.assets import PROCESSED_ASSET_ARGS, consolidated
from spy_pipeline.defs.raw.assets import partition_days, raw_spy_bars
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain.features import DEFAULT_LAGS, build_features
from spy_pipeline.domain.indicators import spy_minute_grid
from spy_pipeline.domain.targets import forward_targets
from spy_pipeline.io import lake


class TrainingConfig(Config):
    horizon_minutes: int = Field(default=120, ge=1, le=390, description="Targets at T+1 ... T+horizon minutes")
    min_non_null_share: float = Field(default=0.5, ge=0.0, le=1.0, description="Drop rows with fewer targets")
    forward_fill: bool = Field(default=False, description="Fill a target minute without a bar with the last price")


class FeaturesConfig(Config):
    lags_minutes: list[int] = Field(default=list(DEFAULT_LAGS), description="Lags of the change features, minutes")


@asset(**PROCESSED_ASSET_ARGS, deps=[consolidated], metadata=dataset_metadata("training"))
def training_dataset(
    context: AssetExecutionContext, config: TrainingConfig, store: ParquetStoreResource
) -> MaterializeResult:
    """Consolidated rows with the same contract's option close at T+1 ... T+horizon minutes (float32
    target_1 ... target_N; same day only; a minute without a bar stays null unless forward_fill)."""
    started = time.monotonic()
    days = partition_days(context)
    files, kept, dropped, by_day = [], 0, 0, {}
    for day in days:
        rows = lake.read_day(store.data_root, "consolidated", day)
        frame = forward_targets(
            rows,
            day,
            horizon=config.horizon_minutes,
            price_column="option_close",
            min_non_null_share=config.min_non_null_share,
            forward_fill=config.forward_fill,
        )
        files.append(store.write_day(frame, day, "training"))
        by_day[day] = file_metadata(store, "training", day, files[-1],
                                    rows_dropped_for_missing_targets=rows.height - frame.height)
        kept, dropped = kept + frame.height, dropped + rows.height - frame.height
    return finish_range(context, days, {
        "partitions": len(days),
        "rows": kept,
        "rows_dropped_for_missing_targets": dropped,
        "horizon_minutes": config.horizon_minutes,
        "written_files": MetadataValue.json(files),
        **timing(started, kept),
    }, by_day)


@asset(**PROCESSED_ASSET_ARGS, deps=[consolidated, raw_spy_bars], metadata=dataset_metadata("features"))
def features(context: AssetExecutionContext, config: FeaturesConfig, store: ParquetStoreResource) -> MaterializeResult:
    """SPY % changes over the lags (k minutes back on SPY's regular-session minute grid, built from the day's
    SPY bars), each contract's IV change over the lags, ATM IV and IV minus ATM IV."""
    started = time.monotonic()
    days = partition_days(context)
    files, rows, by_day = [], 0, {}
    for day in days:
        spy_grid = spy_minute_grid(lake.read_day(store.data_root, "spy", day), day)
        consolidated_rows = lake.read_day(store.data_root, "consolidated", day)
        frame = build_features(consolidated_rows, spy_grid, config.lags_minutes)
        files.append({
            **store.write_day(frame, day, "features"),
            # null by definition: the lag reaches before the open (or SPY had not traded yet)
            "rows_without_spy_change": {
                f"{k}m": frame[f"spy_pct_change_{k}m"].null_count() for k in config.lags_minutes
            },
        })
        by_day[day] = file_metadata(store, "features", day, files[-1],
                                    rows_without_spy_change=MetadataValue.json(files[-1]["rows_without_spy_change"]))
        rows += frame.height
    return finish_range(context, days, {
        "partitions": len(days),
        "rows": rows,
        "lags_minutes": str(config.lags_minutes),
        "written_files": MetadataValue.json(files),
        **timing(started, rows),
    }, by_day)


def _nullable_float(name: str) -> PandasColumn:
    """A float column where NaN means "no value" (IV without a solution, a target minute without a bar)."""
    return PandasColumn(name, constraints=[ColumnDTypeInSetConstraint({"float32", "float64"})])


# For pandas users: what a training file must hold when loaded with pd.read_parquet.
TrainingDataFrame = create_dagster_pandas_dataframe_type(
    name="TrainingDataFrame",
    description="processed/training/{date}.parquet: consolidated columns plus float32 target_1 ... target_N, "
    "the same contract's option close N minutes later (null where it had no bar).",
    columns=[
        PandasColumn.string_column("ticker", non_nullable=True),
        # polars writes microseconds; older pandas readers give nanoseconds: both are UTC instants
        PandasColumn(
            "timestamp",
            constraints=[
                ColumnDTypeInSetConstraint({"datetime64[us, UTC]", "datetime64[ns, UTC]"}),
                NonNullableColumnConstraint(),
            ],
        ),
        PandasColumn.categorical_column("contract_type", categories={"call", "put"}),
        PandasColumn.float_column("strike", non_nullable=True),
        PandasColumn.float_column("option_close", non_nullable=True),
        PandasColumn.float_column("spy_close", non_nullable=True),
        _nullable_float("iv"),
        _nullable_float("delta"),
        _nullable_float("target_1"),
    ],
)


def _matches_pandas_type(step: CheckStep) -> AssetCheckResult:
    store, failures, checked = step.resource("store"), [], 0
    # the type's own check in this step's type-check context (check_dagster_type, a test helper, would build an
    # ephemeral Dagster instance for every file: 0.2 s a day, four times the check itself)
    type_context = step.context.op_execution_context.get_step_execution_context().for_type(TrainingDataFrame)
    for day in checked_days(step.context, store, lake.FOLDERS["training"]):
        path = store.partition_path(day, *lake.FOLDERS["training"])
        result = TrainingDataFrame.type_check(type_context, store.read_frame(path).to_pandas())
        checked += 1
        if not result.success:
            failures.append([store.relative(path), result.description])
    return AssetCheckResult(
        passed=checked > 0 and not failures,
        metadata={
            "files_checked": checked,
            "failures": markdown_table(["file", "problem"], failures or [["-", "none"]]),
        },
    )


training_matches_pandas_type = Check.on(
    training_dataset, "training_matches_pandas_type", _matches_pandas_type, resources={"store"}, blocking=True,
    description="Each training file, loaded with pandas, satisfies the TrainingDataFrame type.",
)
