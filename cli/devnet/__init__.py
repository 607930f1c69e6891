"""``dgpu devnet``: a whole dgpu network on this machine, one process per part."""
