"""Privacy: subject rights (export, erasure) and retention (the purge)."""
