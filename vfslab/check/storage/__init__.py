"""The storage family: ovlfs storage methods (seed 002) checked against `model/storage`."""
