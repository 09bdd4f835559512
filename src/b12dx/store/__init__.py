"""Follow-up over time: patients, the labs, symptom ratings and doses recorded for them,
each assessment kept as an immutable snapshot, and an audit log of every change.

SQLite by default (a file in the user's data directory, WAL mode), PostgreSQL by URL;
SQLAlchemy 2 models in ``tables``, Alembic migrations run on open (``db``). The modules
here turn stored history into contract records (``history``) and call the pure engine;
they hold no clinical rule of their own.
"""
