"""Quality and output-length predictors."""
