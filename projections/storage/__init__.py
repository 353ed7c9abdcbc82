"""The read models' tables: schema and migrations, generations, the projection's reads and
writes, queries and counters, over one dialect (journeys/storage/dialect.py)."""
