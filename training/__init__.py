"""Scripts that train Assay's built-in models (see training/README.md)."""
