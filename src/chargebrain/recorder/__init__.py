"""Usage graphs: measurements recorded about every 10 s into SQLite, downsampled with age.

samples.py (what a tick keeps, the energy of each sample), tiers.py (resolutions, retention,
which tier answers a chart), storage.py (the tables, rollups, reads), charts.py (a chart's
rows), recorder.py (the running recorder: a tick task and a writer thread).
"""
