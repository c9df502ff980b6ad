"""The service's database layer: typed models, the engine, sessions and schema migrations."""
