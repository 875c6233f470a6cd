"""An on-disk queue of Arrow batches: where batches wait while the store is busy (a reader
holds the DuckDB file), so waiting costs disk, not memory."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from ingestor.sinks import Batches
from ingestor.sinks.parquet_files import fsync_path


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._next = self._highest() + 1

    def _files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("*.arrow"))

    def _highest(self) -> int:
        files = self._files()
        return int(files[-1].name.split("-", 1)[0]) if files else 0

    def __len__(self) -> int:
        return len(self._files())

    def put(self, batches: Batches) -> None:
        """Appends each batch as its own file, written whole then renamed into place."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for table, batch in batches:
            if not batch.num_rows:
                continue
            final = self.directory / f"{self._next:012d}-{table}.arrow"
            temporary = final.with_suffix(".tmp")
            with pa.OSFile(str(temporary), "wb") as sink, ipc.new_stream(sink, batch.schema) as w:
                w.write_batch(batch)
            # A spooled batch counts as delivered (the writer acknowledges it), so it must
            # survive the machine, not only the process.
            fsync_path(temporary)
            os.replace(temporary, final)
            self._next += 1
        fsync_path(self.directory)

    def peek(
        self, tables: tuple[str, ...] | None = None
    ) -> tuple[list[Path], list[tuple[str, pa.RecordBatch]]]:
        """Every spooled batch in order (of `tables`, or all), with the files that hold them."""
        files = self._files()
        batches = []
        for path in files:
            table = path.stem.split("-", 1)[1]
            if tables is not None and table not in tables:
                continue
            with pa.memory_map(str(path)) as source:
                for batch in ipc.open_stream(source):
                    batches.append((table, batch))
        return files, batches

    @staticmethod
    def remove(files: list[Path]) -> None:
        for path in files:
            path.unlink(missing_ok=True)
