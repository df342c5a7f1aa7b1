"""One module per rule: `make(common, official_path)` for tools/make_reduction_fixtures.py."""
