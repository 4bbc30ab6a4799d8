"""Importers translating other MTAs' configurations into Outrider TOML."""
