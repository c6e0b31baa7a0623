"""MLflow: the store and runs (`store`), the sweep's parent run (`sweep`), environment tags, tables."""
