"""Reading an in-process run's result by asset (several assets can share one op: decide_and_apply)."""

import dagster as dg


def materializations(result, asset: str) -> list[dg.AssetMaterialization]:
    """The run's materializations of `asset`, in the order they happened."""
    key = dg.AssetKey(asset)
    return [event.event_specific_data.materialization for event in result.get_asset_materialization_events()
            if event.asset_key == key]
