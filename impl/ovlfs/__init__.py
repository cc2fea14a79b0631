"""ovlfs: an overlay of a read-only base directory whose every change goes through a storage method (seed 002's
Storage Method; `storage/`), served through FUSE."""
