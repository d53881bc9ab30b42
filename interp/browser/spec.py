"""Constants of the feature-store format, in a module without heavy imports (the app imports the
store reader, which must not pull in torch or the model code)."""

FORMAT = "interp-feature-store/1"
EXAMPLE_ROW_GROUP = 512  # a feature page reads one or two row groups of examples.parquet
