"""Benchmark the ingest pipeline against a bare ``polars.read_csv`` of the same tables.

Generates a synthetic extract of N families (default 100 000), writes it as an AES-256 ZIP
into a temporary state folder, and runs the real pipeline (``tasks.ingest.pipeline.ingest_file``) with a
stage runner that times each stage. Side by side, in the same run, it times a bare
``polars.read_csv`` of the same plaintext CSV members (in memory). Prints the stage times and
their ratio to the bare read. The database is a fresh SQLite file unless ``--database-url``
names another (use an empty database: rows of earlier runs would be replaced, which is slower).

    python benchmarks/ingest.py --families 100000
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.core.runtime import open_runtime  # noqa: E402
from tasks.core.settings import Settings  # noqa: E402
from tasks.demo.render import aes_zip, render_members  # noqa: E402
from tasks.demo.synthetic import generate_tables  # noqa: E402
from tasks.ingest.pipeline import IngestSecrets, ingest_file  # noqa: E402

PASSPHRASE = "benchmark-passphrase"  # noqa: S105 - synthetic data only
# Reported groups of pipeline stages.
GROUPS: dict[str, tuple[str, ...]] = {
    "decrypt+read": ("check archive", "decrypt", "read"),
    "validate": ("validate",),
    "pseudonymise": ("pseudonymise",),
    "transform": ("transform",),
    "load": ("load",),
    "report": ("report",),
}


def bare_read_csv(members: dict[str, bytes]) -> float:
    """Seconds for polars.read_csv of every CSV member (all columns as text, in memory)."""
    start = time.perf_counter()
    for data in members.values():
        pl.read_csv(io.BytesIO(data), infer_schema=False)
    return time.perf_counter() - start


def run(families: int, seed: int, database_url: str | None, workdir: Path) -> dict[str, Any]:
    """Generate, encrypt and ingest one extract; return stage times and row counts."""
    start = time.perf_counter()
    tables = generate_tables(families, seed)
    members = render_members(tables, fmt="csv")
    path = workdir / "inbox" / f"benchmark-{families}.zip"
    path.parent.mkdir(parents=True)
    encrypted = aes_zip(members, PASSPHRASE)
    path.write_bytes(encrypted)
    generated = time.perf_counter() - start

    settings = Settings(home=workdir / "var", database_url=database_url)
    runtime = open_runtime(settings)
    secrets = IngestSecrets(passphrase=PASSPHRASE, identity=None, pseudonym_key=b"p" * 32,
                            contact_key=b"c" * 32)
    times: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[name] = times.get(name, 0.0) + time.perf_counter() - t0

    t0 = time.perf_counter()
    outcome = ingest_file(path, runtime, secrets, stage=timed)
    total = time.perf_counter() - t0
    runtime.engine.dispose()
    if outcome.status != "ingested":
        raise SystemExit(f"benchmark extract was not ingested: {outcome.error}")
    bare = bare_read_csv(members)
    return {
        "families": families,
        "rows": {t: c.rows for t, c in outcome.tables.items()},
        "plaintext_mb": sum(len(d) for d in members.values()) / 1e6,
        "encrypted_mb": len(encrypted) / 1e6,
        "generate_s": generated,
        "stages": {group: sum(times.get(s, 0.0) for s in stages)
                   for group, stages in GROUPS.items()},
        "total_s": total,
        "bare_read_csv_s": bare,
        "backend": runtime.engine.dialect.name,
    }


def report(result: dict[str, Any]) -> str:
    """The figures as a small text table."""
    bare = result["bare_read_csv_s"]
    rows = ", ".join(f"{t} {n:,}" for t, n in result["rows"].items())
    lines = [
        f"families {result['families']:,} ({rows}); plaintext {result['plaintext_mb']:.1f} MB, "
        f"encrypted {result['encrypted_mb']:.1f} MB; database {result['backend']}",
        f"(generating and encrypting the extract took {result['generate_s']:.1f} s, not counted)",
        "",
        f"{'stage':<22}{'seconds':>10}{'x bare read_csv':>18}",
    ]
    for stage, seconds in result["stages"].items():
        lines.append(f"{stage:<22}{seconds:>10.2f}{seconds / bare:>18.1f}")
    total = result["total_s"]
    lines.append(f"{'whole pipeline':<22}{total:>10.2f}{total / bare:>18.1f}")
    lines.append(f"{'bare polars.read_csv':<22}{bare:>10.2f}{1.0:>18.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None,
                        help="SQLAlchemy URL of an empty database (default: a fresh SQLite file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cluster-eval-bench-") as folder:
        print(report(run(args.families, args.seed, args.database_url, Path(folder))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
