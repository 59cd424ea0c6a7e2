"""The engine: pure logic and adapters, with no desktop imports (enforced by import-linter)."""
