"""Processed layer: consolidated per-option-per-minute rows, training sets, features, scanner events."""
