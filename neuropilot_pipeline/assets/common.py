"""Small helpers the asset modules share: metadata that reads well in the UI."""


from typing import Any

import dagster as dg
import pandas as pd

from ..storage.warehouse import WriteInfo

WAREHOUSE_POOL = "warehouse_writer"


def table_metadata(info: WriteInfo, frame: pd.DataFrame, preview_rows: int = 10) -> dict[str, Any]:
    preview = frame.head(preview_rows)
    return {
        "dagster/row_count": info.rows,
        "path": dg.MetadataValue.path(str(info.path)),
        "bytes": info.bytes,
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False) if not preview.empty else "_empty_"),
    }
