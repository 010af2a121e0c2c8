"""The ML core, one subpackage per concept, no Dagster imports (checked by import-linter).

Layers, lowest first: `config` → `data` → `tracking`, `spark` → `model` → `training`,
`scoring` → `serving`. See docs/architecture.md.
"""
