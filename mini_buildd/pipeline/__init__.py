"""The upload pipeline: FTP incoming -> quarantine -> packager -> builder (local or remote) -> back to the packager."""
