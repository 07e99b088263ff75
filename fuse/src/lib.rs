//! The `/secrets` FUSE filesystem: built in its own issue, deliberately empty until
//! then (no placeholder features).
