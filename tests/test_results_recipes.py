"""The plain-tool recipes of results/README.md (pyarrow, DuckDB, polars) run as written and
give exactly what sambench's own reader gives, on a folder with the awkward cases: a
trial committed twice (its old commit left in a batch file) and a running trial's
progress file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import store

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "results" / "README.md").read_text()


def _block(language: str, marker: str) -> str:
    return next(b for b in re.findall(rf"```{language}\n(.*?)```", README, flags=re.S) if marker in b)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    from fakes import make_results

    sweep_dir = make_results(tmp_path_factory.mktemp("results"), n_seeds=1, epochs=3, incomplete=True)
    store.compact(sweep_dir)  # every commit now sits in a batch file
    trials = store.read_trials(sweep_dir)
    tid = str(trials["trial_id"].iloc[0])
    epochs = store.read_epochs(sweep_dir, include_partial=False)
    records = [{k: v for k, v in r.items() if k in store.EPOCHS_SCHEMA.names and k not in ("sweep", "finished_at")}
               for r in epochs[epochs["trial_id"] == tid].astype(object).where(epochs.notna(), None).to_dict("records")]
    records = records[:2]  # the rerun recorded two evaluations, not three
    entry = next(t for t in store.read_manifest(sweep_dir)["trials"] if t["trial_id"] == tid)
    row = store.trial_row(sweep=sweep_dir.name, spec_hash="f" * 40, trial_id=tid, config=entry["trial"],
                          records=records, status="ok", error=None, attempts=2, info={}, node="n", provenance={})
    store.write_trial(sweep_dir, row, records)
    return sweep_dir


def _expected(sweep_dir: Path) -> tuple[int, int]:
    trials = store.read_trials(sweep_dir)
    epochs = store.read_epochs(sweep_dir, include_partial=False)
    assert len(trials) == 5 and len(epochs) == 4 * 3 + 2  # the rerun's two rows, not the old three
    return len(trials), len(epochs)


def test_pyarrow_recipe(sweep):
    namespace: dict = {}
    exec(_block("python", "import pyarrow.parquet").replace("results/my-sweep", str(sweep)), namespace)
    assert (namespace["trials"].num_rows, namespace["epochs"].num_rows) == _expected(sweep)


def test_duckdb_recipe(sweep):
    import duckdb

    con = duckdb.connect()
    sql = _block("sql", "CREATE VIEW trials").replace("results/my-sweep", str(sweep))
    for statement in sql.split(";"):
        statement = "\n".join(line for line in statement.splitlines() if not line.startswith("--"))
        if statement.strip():
            con.execute(statement)
    counts = con.execute("SELECT (SELECT count(*) FROM trials), (SELECT count(*) FROM epochs)").fetchone()
    assert counts == _expected(sweep)
    provenance = con.execute(
        f"SELECT count(*) FROM parquet_kv_metadata('{sweep}/trials/*.parquet') WHERE key = 'sambench'").fetchone()
    assert provenance[0] == 2  # the batch file and the rerun's own file


def test_polars_recipe(sweep):
    namespace: dict = {}
    exec(_block("python", "import polars").replace("results/my-sweep", str(sweep)), namespace)
    assert (namespace["trials"].height, namespace["epochs"].height) == _expected(sweep)


def test_the_readme_quick_query_counts_each_trial_once(sweep):
    import duckdb

    readme = (ROOT / "README.md").read_text()
    query = next(b for b in re.findall(r"```sql\n(.*?)```", readme, flags=re.S) if "final_test_acc" in b)
    query = "\n".join(line for line in query.splitlines() if not line.startswith("--"))
    rows = duckdb.connect().execute(query.replace("results/quick", str(sweep)).rstrip().rstrip(";")).fetchall()
    trials = store.read_trials(sweep)
    expected = trials.groupby("method", observed=True)["final_test_acc"].mean()
    assert {method: pytest.approx(value) for method, value in rows} == expected.to_dict()
