"""Importers: other MTAs' configuration translated into Outrider TOML."""
