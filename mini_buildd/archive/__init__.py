"""Repository operations: package moves, the write-ahead journal, snapshots, checks of sources."""
