"""PostgreSQL stores: one per residency region (the cloud side) and the CM database."""
