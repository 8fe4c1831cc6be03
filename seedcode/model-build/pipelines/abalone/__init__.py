"""Abalone age regression: preprocess, train (built-in XGBoost), evaluate, gate, register."""
