"""The ML core: configuration, data loading, training and scoring. No Dagster imports here."""
