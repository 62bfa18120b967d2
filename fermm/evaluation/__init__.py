"""Evaluation: metrics and the results schema, evaluating models on FER splits and on a user's labelled set,
plots and model cards."""
