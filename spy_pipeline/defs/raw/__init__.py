"""Raw layer: Polygon data as it arrives, one Parquet file per dataset and trading day."""
