"""Subcommands of the ``s3d-nerf`` console script (argument parsing and wiring only)."""
