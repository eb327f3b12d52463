"""The lab's store: embedded, etcd-like (global revision, watch from a revision, compaction, leases)."""
