"""Importers: other MTAs' configurations translated into Outrider TOML."""
