"""The storage formats under the blocks, Prefect-free: Lance documents, result files, pieces, stream snapshots, input files."""
