"""Model merging with mergekit: the `merge` command, config checks and the family tree."""
