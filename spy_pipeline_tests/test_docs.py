"""The README's generated sections: they match the code, cover every declared column, asset and flag, and
`spy-pipeline docs --check` says clearly when they drift."""

import contextlib
import io
import re
from pathlib import Path

import polars as pl
import pytest

from spy_pipeline.app import cli, docs
from spy_pipeline.definitions import defs
from spy_pipeline.domain import datasets, schemas
from spy_pipeline_tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"


@pytest.fixture(scope="module")
def sections() -> dict[str, str]:
    return docs.generated_sections(cli.build_parser())


def test_readme_generated_sections_match_the_code(sections) -> None:
    stale = docs.check_readme(README, sections)
    assert stale == [], f"README.md sections {stale} are stale: run `.venv/bin/spy-pipeline docs` and commit"


def _tables(markdown: str) -> dict[str, dict[str, tuple[str, str]]]:
    """Each `### `name`` section's table as {column: (type, description)}."""
    tables: dict[str, dict[str, tuple[str, str]]] = {}
    current = None
    for line in markdown.splitlines():
        if heading := re.fullmatch(r"### `(\w+)`", line):
            current = tables.setdefault(heading.group(1), {})
        elif current is not None and (row := re.fullmatch(r"\| `([^`]+)` \| ([^|]+) \| (.*) \|", line)):
            current[row.group(1)] = (row.group(2), row.group(3).replace("\\|", "|"))
    return tables


def _declared_schemas() -> list[schemas.DatasetSchema]:
    return [value for value in vars(schemas).values() if isinstance(value, schemas.DatasetSchema)]


def _squashed(text: str) -> str:
    return re.sub(r"\W|time_unit=|time_zone=", "", text)


def _entry_name(entry: schemas.Column | schemas.ColumnFamily) -> str:
    return entry.name if isinstance(entry, schemas.Column) else entry.pattern


def test_dataset_tables_hold_every_column_of_every_declared_schema_with_its_type_and_description(sections) -> None:
    tables = _tables(sections["datasets"])
    declared = _declared_schemas()
    assert len(declared) >= 9
    by_name = {schema.name: schema for schema in declared}
    for schema in declared:
        table = tables[schema.name]
        entries = list(schema.entries)
        intro = rf"### `{schema.name}`\n\n[^\n]*Every `(\w+)` column, in the same order"
        extends = re.search(intro, sections["datasets"])
        if extends:  # training: every consolidated column, then the targets
            base = by_name[extends.group(1)]
            assert entries[: len(base.entries)] == list(base.entries), (schema.name, base.name)
            entries = entries[len(base.entries):]
        assert list(table) == [_entry_name(entry) for entry in entries], schema.name
        for entry in entries:
            rendered_type, description = table[_entry_name(entry)]
            assert _squashed(rendered_type) == _squashed(str(entry.dtype)), (schema.name, entry, rendered_type)
            if isinstance(entry, schemas.Column):
                assert description == entry.description, (schema.name, entry.name)
            else:
                assert entry.description in description and entry.rule in description, (schema.name, entry.pattern)
    assert "target_{k}" in tables["training"] and "iv_change_{k}m" in tables["features"]


def test_data_readme_lists_every_registered_dataset_and_is_up_to_date() -> None:
    data_readme = docs.data_readme_of(README)
    assert docs.check_readme(data_readme, docs.data_readme_sections()) == [], (
        "data/README.md is stale: run `.venv/bin/spy-pipeline docs` and commit"
    )
    rows = re.findall(r"^\| `([^`]+)` \| `(\w+)` \| `(\w+)`", data_readme.read_text(), re.MULTILINE)
    assert [(path, name) for path, name, _ in rows] == [(d.path, d.name) for d in datasets.DATASETS]
    assert {name for _, name, _ in rows} >= {
        "spy", "vix", "equity_bars", "options", "contracts", "news", "dividends", "splits", "consolidated",
        "training", "features", "options_movement", "intraday_consolidated", "stream_bars", "stream_news",
        "stream_contracts", "stream_compacted",
    }


def test_every_parquet_path_an_asset_declares_is_registered_and_documented(sections) -> None:
    documented = set(re.findall(r"`([a-z_/{}]+\.parquet)`", sections["datasets"]))
    declared = 0
    for spec in defs.resolve_all_asset_specs():
        path = spec.metadata.get("path", "")
        if not isinstance(path, str) or not path.endswith(".parquet"):
            continue
        alternatives = re.fullmatch(r"(.*)\{(\w+(?:,\w+)+)\}\.parquet", path)  # raw/corporate_actions/{a,b}.parquet
        paths = {f"{alternatives[1]}{name}.parquet" for name in alternatives[2].split(",")} if alternatives else {path}
        assert paths <= documented, f"{spec.key.to_user_string()} writes {path}: not in README's dataset tables"
        registered = {dataset.path for dataset in datasets.DATASETS}
        assert paths <= registered, f"{spec.key.to_user_string()} writes {path}: add it to domain/datasets.py"
        writers = {dataset.written_by for dataset in datasets.DATASETS if dataset.path in paths}
        assert writers == {spec.key.to_user_string()}, (path, writers)
        declared += 1
    assert declared == 11  # raw (5 and corporate_actions), processed (4), intraday_consolidated


def test_asset_graph_has_every_asset_in_its_group_and_every_dependency(sections) -> None:
    graph = defs.resolve_asset_graph()
    text = sections["asset-graph"]
    assert text.startswith("```mermaid\nflowchart LR\n")
    groups = re.findall(r"subgraph group_\w+\[(\w+)\]\n((?:    .*\n)*)  end", text)
    members = {re.match(r"\s+(\w+)", line).group(1): group for group, body in groups for line in body.splitlines()}
    edges = set(re.findall(r"^  (\w+) --> (\w+)$", text, re.MULTILINE))
    keys = graph.get_all_asset_keys()
    assert len(keys) >= 13
    for key in keys:
        node = graph.get(key)
        assert members[key.to_user_string()] == node.group_name
        assert {(p.to_user_string(), key.to_user_string()) for p in node.parent_keys} <= edges
    assert len(edges) == sum(len(graph.get(k).parent_keys) for k in keys)


def test_cli_reference_lists_every_subcommand_and_flag(sections) -> None:
    parser = cli.build_parser()
    text = sections["cli"]
    for command in (["run"], ["status"], ["docs"], ["sandbox", "serve"]):
        help_text = _help(parser, command)
        assert f"### `spy-pipeline {' '.join(command)}" in text
        for flag in set(re.findall(r"--[a-z][a-z-]+", help_text)) - {"--help"}:
            assert f"`{flag}" in text, (command, flag)
    assert "| `--port PORT` | `8765` |" in text


def _help(parser, command: list[str]) -> str:
    """The argparse help text of a subcommand, as `spy-pipeline <command> --help` prints it."""
    buffer = io.StringIO()
    with pytest.raises(SystemExit), contextlib.redirect_stdout(buffer):
        parser.parse_args([*command, "--help"])
    return buffer.getvalue()


def test_a_drifted_readme_is_reported_and_rewritten(tmp_path: Path, sections) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text())
    drifted = dict(sections, datasets=docs.render_datasets([
        docs.SchemaDoc(
            schemas.DatasetSchema("minute_bars", ("ticker",), (schemas.Column("new_column", pl.Float64(), "new"),)),
            (("spy", "raw/spy/{date}.parquet"),),
        ),
    ]))
    assert docs.check_readme(readme, drifted) == ["datasets"]
    assert docs.update_readme(readme, drifted) == ["datasets"]
    assert "| `new_column` | Float64 |" in readme.read_text()
    assert docs.check_readme(readme, drifted) == []
    assert docs.check_readme(readme, sections) == ["datasets"]


def test_docs_check_exits_1_naming_the_stale_sections_and_the_fix(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text().replace("| `strike` | Float64 |", "| `strike` | Int64 |"))
    assert cli.main(["docs", "--check", "--readme", str(readme)]) == 1
    err = capsys.readouterr().err
    assert "is stale" in err and "datasets" in err and "spy-pipeline docs" in err
    assert cli.main(["docs", "--readme", str(readme)]) == 0
    assert "rewrote datasets" in capsys.readouterr().out
    assert readme.read_text() == README.read_text()
    assert cli.main(["docs", "--check", "--readme", str(readme)]) == 0


def test_docs_check_covers_data_readme_next_to_the_readme(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text())
    (tmp_path / "data").mkdir()
    data_readme = tmp_path / "data" / "README.md"
    original = docs.data_readme_of(README).read_text()
    data_readme.write_text(original.replace("| `raw/spy/{date}.parquet` | `spy` |", "| `raw/spy/{date}.csv` | `spy` |"))
    assert cli.main(["docs", "--check", "--readme", str(readme)]) == 1
    err = capsys.readouterr().err
    assert f"{data_readme} is stale" in err and "data-layout" in err and str(readme) + " is stale" not in err
    assert cli.main(["docs", "--readme", str(readme)]) == 0
    assert f"{data_readme}: rewrote data-layout" in capsys.readouterr().out
    assert data_readme.read_text() == original


def test_docs_without_markers_fails_with_one_line(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# a README without markers\n")
    assert cli.main(["docs", "--check", "--readme", str(readme)]) == 2
    assert capsys.readouterr().err.strip() == (
        "spy-pipeline: the README needs exactly one <!-- BEGIN GENERATED: asset-graph --> and one "
        "<!-- END GENERATED: asset-graph -->"
    )


def test_readme_keeps_its_two_commands_first() -> None:
    lines = README.read_text().splitlines()
    first_block = lines[lines.index("```bash") + 1:lines.index("```bash") + 3]
    assert [line.split()[:2] for line in first_block] == [["make", "run"], ["make", "test"]]
    assert lines.index("```bash") < min(i for i, line in enumerate(lines) if line.startswith("## "))
