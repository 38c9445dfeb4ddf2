"""Reading and writing micrograph files (MRC) and micrograph lists (RELION STAR)."""
