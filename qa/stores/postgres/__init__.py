"""The shared store: PostgreSQL + pgvector (schema, store, sync, keyword);
needs the `qa[postgres]` extra."""
