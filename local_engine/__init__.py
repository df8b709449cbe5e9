"""A local stand-in for the Dagger engine: the module's own code on Docker, engine semantics."""
