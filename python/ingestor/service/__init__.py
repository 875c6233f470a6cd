"""The capture service: a supervisor, collector processes around the Rust engine, and one
writer process that owns the store."""
