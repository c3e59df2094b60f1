//! Nodesets: `web[01-20]` expands to web01…web20; a list of names folds back.
