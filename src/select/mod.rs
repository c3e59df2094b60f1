//! The selection language: one grammar for the filter bar, `crew run` and heists.
